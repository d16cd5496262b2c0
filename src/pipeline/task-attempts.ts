// One pipeline task from its first try to its end, the same for a local run and for a machine of a
// distributed one: a lost connection is retried for the retry window, another transient error
// `retries` times, a permanent failure is counted, reported and written to the ledger (the server
// may be back only later), and a task that Ctrl-C rolled back is left for the next run.
import { setMaxListeners } from 'node:events'
import type { TaskEnvelope, TaskOutcome } from '../crew/crew-protocol.ts'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { RetryClock, sleep, type RetryPolicy } from '../database/connection-retry.ts'
import { recordFailure } from './pipeline-ledger.ts'

/** A permanent failure, as a run's summary lists it. */
export interface TaskFailure {
  key: string
  attempts: number
  code?: string
  message: string
}

/** The counts a run keeps (its progress state, or a machine's counts): updated in place. */
export interface AttemptCounts {
  done: number
  skipped: number
  failed: number
  retried: number
}

/** What the attempts of every task of one run share: made once per run by {@link taskAttempts}. */
export interface TaskAttempts {
  readonly pipeline: string
  readonly ledger: string
  readonly policy: RetryPolicy
  readonly counts: AttemptCounts
  /** Tasks done, by worker number. */
  readonly perWorker: Record<string, number>
  /** The first 20 permanent failures. */
  readonly failures: TaskFailure[]
  readonly signal?: AbortSignal
  readonly db: Database
  /** The ledger's `host` of a failure row. */
  readonly host: string
  /** Send one attempt to the crew. */
  dispatch(envelope: TaskEnvelope): Promise<TaskOutcome>
  /** Run one of the main thread's queries through an outage (the failure row). */
  patiently<R>(fn: () => Promise<R>): Promise<R>
  /** After each outcome: the counts changed. */
  onChange(): void
  /** Whether the server answered (false: the connection was lost). */
  onReached?(reached: boolean): void
  /** A task was done by this attempt (not skipped): its outcome carries how long it took in the worker. */
  onDone?(key: string, out: TaskOutcome & { ok: true }): void
  /** A task failed for good (after `failures` has it, before its ledger row is written). */
  onFailed?(failure: TaskFailure, workerId: number): void
  /** Nothing more can run (a worker's start failed, the crew closed). */
  onFatal(error: PgcrewError): void
}

/** The shared part of a run's task attempts; `signal` may have many tasks waiting on it at once. */
export function taskAttempts(attempts: TaskAttempts): TaskAttempts {
  // Every task that waits before a retry listens on the run's signal (and stops listening after):
  // a server restart has as many listening as tasks in flight, which is not a leak.
  if (attempts.signal) setMaxListeners(0, attempts.signal)
  return attempts
}

/**
 * Run one task until it is done, skipped, failed for good, or left undone: resolves true when it was
 * left undone (Ctrl-C rolled it back, or nothing more can run), so a caller that owns it (an engine
 * job) can hand it back. `first` is the outcome of a first attempt already sent (in a batch).
 */
export async function attemptTask(a: TaskAttempts, task: unknown, key: string, first?: TaskOutcome): Promise<boolean> {
  const { counts } = a
  // Made on the first retry only: most tasks never need one.
  let clock: RetryClock | undefined
  // A thread that died took a whole message with it, tasks that had committed included: when such
  // a task is retried its claim finds the key done, and it was done by this run.
  let crashed = false
  for (let attempt = 1; ; attempt++) {
    const out = attempt === 1 && first !== undefined ? first : await a.dispatch({ mode: 'pipeline', task, attempt, pipeline: a.pipeline, key, ledger: a.ledger })
    if (out.ok) {
      a.onReached?.(true)
      if (out.skipped && crashed) counts.done++
      else if (out.skipped) counts.skipped++
      else {
        counts.done++
        a.perWorker[out.workerId] = (a.perWorker[out.workerId] ?? 0) + 1
        a.onDone?.(key, out)
      }
      a.onChange()
      return false
    }
    const error = out.error
    if (error.code === 'WORKER_INIT_FAILED' || error.code === 'CLOSED') {
      a.onFatal(new PgcrewError(error.code, error.message))
      return true
    }
    // Stopping (Ctrl-C): a transient failure (the server shutting down, a lost connection…) rolled the
    // task back, so it was not run: neither done nor failed, and the next run does it.
    if (error.transient && a.signal?.aborted) {
      a.onChange()
      return true
    }
    if (error.code === 'WORKER_CRASHED') crashed = true
    const lost = error.connectionLost === true
    a.onReached?.(!lost)
    // A lost connection is retried for the retry window, other transient errors `retries` times.
    const wait = error.transient ? (clock ??= new RetryClock(a.policy)).next(lost ? 'connection' : 'transient') : undefined
    if (wait !== undefined) {
      counts.retried++
      a.onChange()
      await sleep(wait, a.signal)
      if (a.signal?.aborted) {
        a.onChange()
        return true
      }
      continue
    }
    counts.failed++
    const failure: TaskFailure = { key, attempts: attempt, code: error.code, message: error.message }
    if (a.failures.length < 20) a.failures.push(failure)
    a.onFailed?.(failure, out.workerId)
    try {
      // A failure row is written even when the server comes back only later (within the window).
      const workerId = out.workerId > 0 ? out.workerId : undefined
      await a.patiently(() => recordFailure(a.db, a.ledger, { pipeline: a.pipeline, key, attempts: attempt, workerId, host: a.host, code: error.code ?? error.name, message: error.message }))
    } catch (e) {
      // The task still failed (and counts so); the run goes on. Only the ledger row is missing.
      failure.message += ` (the ledger write failed, so the ledger does not show this failure: ${e instanceof Error ? e.message : String(e)})`
    }
    a.onChange()
    return false
  }
}
