import { isConnectionLost, isTransientError } from '../errors/database-error.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { DatabaseSnapshot } from '../database/database-snapshot.ts'

/** What each crew worker thread receives as workerData. */
export interface CrewWorkerData {
  snapshot: DatabaseSnapshot
  /** URL of the user's worker module (its default export comes from defineWorker). */
  workerModule: string
  perWorkerConnections: number
  /** A batch of pipeline tasks sends each COMMIT with the next task's BEGIN and claim (default true). */
  lanes?: boolean
  /** How long a worker's start waits for a server that is full, starting or unreachable. */
  retryWindowMillis?: number
  /** Sessions are named `<applicationName> worker <n>` (default 'pgcrew'). */
  applicationName?: string
  /** BroadcastChannel name for close/ready messages. */
  channel: string
  /** Shared by the crew's threads: each takes the next worker number (1, 2, …) from slot 0. */
  workerNumbers: Int32Array
  /** This machine's name (PGCREW_HOSTNAME, else `hostname -f`), found once by the crew: the ledger's `host`. */
  host: string
}

/** One unit of work sent to a worker. */
export type TaskEnvelope = ({ mode: 'plain'; task: unknown; attempt: number } | { mode: 'pipeline'; task: unknown; attempt: number; pipeline: string; key: string; ledger: string }) & {
  /** Set when the crew has a task timeout: the worker says when the task starts, and the clock starts then. */
  timeoutId?: number
}

/**
 * Several envelopes in one message: the thread hop and postMessage are paid once for all of them.
 * Each still runs on its own (a pipeline task in its own transaction) and gets its own outcome.
 */
export interface BatchEnvelope {
  mode: 'batch'
  tasks: TaskEnvelope[]
}

/** An error as it crosses the thread boundary: plain data, no stack, never a secret. */
export interface SerializedError {
  name: string
  code?: string
  message: string
  transient: boolean
  /** The connection was lost or could not be made (server gone, restarting, full): retried for a time window. */
  connectionLost?: boolean
  detail?: string
}

/**
 * What a worker sends back for a task. `workerId` is the crew's number for the worker (1…threads);
 * `threadId` is the thread's own id, by which the crew finds the thread (absent when no worker answered).
 */
export type TaskOutcome = (
  { ok: true; value: unknown; skipped?: boolean; /** A pipeline task's time in the worker, transaction included. */ millis?: number } | { ok: false; error: SerializedError }
) & { workerId: number; threadId?: number }

/** Something thrown that is not an Error (a string, a plain object): readable, not "[object Object]". */
function describeThrown(value: unknown): string {
  if (typeof value === 'string') return value
  try {
    const json = JSON.stringify(value)
    if (json !== undefined) return `a non-Error value was thrown: ${json.length > 300 ? json.slice(0, 300) + '…' : json}`
  } catch {
    // circular or a BigInt: fall through
  }
  return `a non-Error value was thrown: ${String(value)}`
}

export function serializeError(error: unknown): SerializedError {
  const e = error as { name?: string; code?: unknown; message?: string; detail?: unknown }
  return {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    code: typeof e?.code === 'string' ? e.code : undefined,
    message: typeof e?.message === 'string' ? e.message : describeThrown(error),
    transient: isTransientError(error),
    connectionLost: isConnectionLost(error),
    detail: typeof e?.detail === 'string' ? e.detail : undefined,
  }
}

/** The error a task failed with, rebuilt in the main thread (code and transient flag kept). */
export class TaskError extends PgcrewError {
  readonly transient: boolean
  /** See {@link SerializedError.connectionLost}. */
  readonly connectionLost: boolean
  readonly originalName: string
  constructor(
    error: SerializedError,
    readonly workerId?: number,
  ) {
    super(error.code ?? 'TASK_FAILED', error.message, { details: { name: error.name, detail: error.detail, workerId } })
    this.name = 'TaskError'
    this.transient = error.transient
    this.connectionLost = error.connectionLost === true
    this.originalName = error.name
  }
}

/** Messages on the crew's BroadcastChannel. */
export type CrewMessage =
  | { type: 'ready'; threadId: number }
  | { type: 'close' }
  | { type: 'closed'; threadId: number }
  | { type: 'init-failed'; workerId: number; error: SerializedError }
  | { type: 'started'; threadId: number; timeoutId: number }
