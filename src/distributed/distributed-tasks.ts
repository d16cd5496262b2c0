// One job's tasks on the local crew: sent to a worker thread as one message, each in its own
// transaction with its ledger claim; a task that fails transiently is retried on its own, by the
// same loop as a local run (pipeline/task-attempts.ts).
import type { Crew } from '../crew/crew.ts'
import type { TaskEnvelope } from '../crew/crew-protocol.ts'
import type { Database } from '../database/database.ts'
import { withConnectionRetry, type ConnectionRetryOptions, type RetryPolicy } from '../database/connection-retry.ts'
import { attemptTask, taskAttempts, type TaskAttempts } from '../pipeline/task-attempts.ts'
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
  crew: Crew
  counts: MachineCounts
  attempts: TaskAttempts
}

/** What every job of this machine shares; made once. */
export function jobContext(o: {
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
}): JobContext {
  const { counts, crew } = o
  const attempts = taskAttempts({
    pipeline: o.pipeline,
    ledger: o.ledger,
    policy: o.policy,
    counts,
    perWorker: counts.perWorker,
    failures: counts.failures,
    signal: o.signal,
    db: o.db,
    host: o.host,
    dispatch: (envelope) => crew.dispatch(envelope),
    patiently: (fn) => withConnectionRetry(fn, o.mainRetry),
    onChange: () => {},
    onFatal: (error) => {
      counts.fatal ??= error
    },
  })
  return { crew, counts, attempts }
}

/**
 * Run one job's tasks. Resolves with how many tasks were left undone because the machine is
 * stopping (they rolled back): the caller fails the job then, and the engine gives it to another machine.
 */
export async function runJobTasks(ctx: JobContext, tasks: ReadonlyArray<{ key: string | number }>): Promise<number> {
  const { attempts } = ctx
  const envelopes: TaskEnvelope[] = tasks.map((task) => ({ mode: 'pipeline', task, attempt: 1, pipeline: attempts.pipeline, key: String(task.key), ledger: attempts.ledger }))
  const first = await ctx.crew.dispatchBatch(envelopes)
  const left = await Promise.all(first.map((outcome, i) => attemptTask(attempts, tasks[i], String(tasks[i]!.key), outcome)))
  ctx.counts.jobs++
  return left.filter(Boolean).length
}
