// One job's tasks on the local crew: sent to a worker thread as one message, each in its own
// transaction with its ledger claim; a task that fails transiently is retried on its own, by the
// same rules as a local run (RetryClock: the retry window for a lost connection, `retries` otherwise).
import type { Crew } from '../crew/crew.ts'
import type { TaskEnvelope, TaskOutcome } from '../crew/crew-protocol.ts'
import type { Database } from '../database/database.ts'
import { RetryClock, sleep, withConnectionRetry, type ConnectionRetryOptions, type RetryPolicy } from '../database/connection-retry.ts'
import { recordFailure } from '../pipeline/pipeline-ledger.ts'
import type { RunSummary } from '../pipeline/pipeline.ts'

/** This machine's counts, shared by every job it runs. */
export interface MachineCounts {
  done: number
  skipped: number
  failed: number
  retried: number
  jobs: number
  perWorker: Record<string, number>
  failures: RunSummary['failures']
  /** Set when nothing more can run here (a worker's init failed, the crew closed). */
  fatal?: unknown
}

export interface JobContext {
  db: Database
  crew: Crew
  pipeline: string
  ledger: string
  policy: Required<Pick<RetryPolicy, 'retries' | 'windowMillis' | 'firstDelayMillis'>>
  counts: MachineCounts
  /** Aborted on Ctrl-C: a task rolled back now is not retried here (its job goes back to the queue). */
  signal?: AbortSignal
  mainRetry: ConnectionRetryOptions
  /** The ledger's `host` of this machine. */
  host: string
  onChange: () => void
}

/**
 * Run one job's tasks. Resolves with how many tasks were left undone because the machine is
 * stopping (they rolled back): the caller fails the job then, and the engine gives it to another machine.
 */
export async function runJobTasks(ctx: JobContext, tasks: ReadonlyArray<{ key: string | number }>): Promise<number> {
  const envelopes: TaskEnvelope[] = tasks.map((task) => ({ mode: 'pipeline', task, attempt: 1, pipeline: ctx.pipeline, key: String(task.key), ledger: ctx.ledger }))
  const first = await ctx.crew.dispatchBatch(envelopes)
  const left = await Promise.all(first.map((outcome, i) => settle(ctx, envelopes[i]!, outcome)))
  ctx.counts.jobs++
  return left.filter(Boolean).length
}

/** Follow one task from its first outcome to done, skipped, failed, or (stopping) left undone: true. */
async function settle(ctx: JobContext, envelope: TaskEnvelope, outcome: TaskOutcome): Promise<boolean> {
  const { counts } = ctx
  const clock = new RetryClock(ctx.policy)
  // A thread that died took its whole message with it, committed tasks included: retried, such a
  // task finds its key done, and it was done here.
  let crashed = false
  for (let attempt = 1; ; attempt++) {
    if (outcome.ok) {
      if (outcome.skipped && !crashed) counts.skipped++
      else {
        counts.done++
        if (!outcome.skipped) counts.perWorker[outcome.workerId] = (counts.perWorker[outcome.workerId] ?? 0) + 1
      }
      ctx.onChange()
      return false
    }
    if (outcome.error.code === 'WORKER_INIT_FAILED' || outcome.error.code === 'CLOSED') {
      counts.fatal ??= outcome.error
      return true
    }
    if (outcome.error.transient && ctx.signal?.aborted) return true
    if (outcome.error.code === 'WORKER_CRASHED') crashed = true
    const wait = outcome.error.transient ? clock.next(outcome.error.connectionLost ? 'connection' : 'transient') : undefined
    if (wait !== undefined) {
      counts.retried++
      ctx.onChange()
      await sleep(wait, ctx.signal)
      if (ctx.signal?.aborted) return true
      outcome = await ctx.crew.dispatch({ ...envelope, attempt: attempt + 1 })
      continue
    }
    counts.failed++
    const failure = { key: envelope.mode === 'pipeline' ? envelope.key : '?', attempts: attempt, code: outcome.error.code ?? outcome.error.name, message: outcome.error.message }
    const workerId = outcome.workerId > 0 ? outcome.workerId : undefined
    if (counts.failures.length < 20) counts.failures.push(failure)
    try {
      await withConnectionRetry(
        () => recordFailure(ctx.db, ctx.ledger, { pipeline: ctx.pipeline, key: failure.key, attempts: attempt, workerId, host: ctx.host, code: failure.code, message: failure.message }),
        ctx.mainRetry,
      )
    } catch (error) {
      failure.message += ` (the ledger write failed, so the ledger does not show this failure: ${(error as Error).message})`
    }
    ctx.onChange()
    return false
  }
}
