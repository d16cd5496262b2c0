import type { Database } from '../database/database.ts'
import type { DatabaseOptions } from '../connect/connect-options.ts'
import { discardRealmConnections } from '../database/database-realm.ts'
import type { DatabaseSnapshot } from '../database/database-snapshot.ts'
import type { Transaction } from '../database/transaction.ts'

/** What a worker's init hook receives. */
export interface WorkerContext {
  /** This worker's Database, reconnected from the master's snapshot (same profile, role, dbversion, pooling). */
  db: Database
  /**
   * The crew's number for this worker: 1…threads, in the order its threads take their first task (a
   * thread that replaces a dead one takes the next number). In its connections' application_name,
   * the ledger's `worker` column and a pipeline summary's `perWorker`.
   */
  workerId: number
  /** Aborted when the crew closes. */
  signal: AbortSignal
}

/** What each task call receives besides the task. */
export interface TaskContext {
  db: Database
  workerId: number
  /** In a pipeline: the transaction the task's writes and its ledger mark commit in together. */
  tx?: Transaction
  /** 1 on the first try, 2+ on retries. */
  attempt: number
}

/** A task handler made by a worker's init hook. */
export type TaskHandler<T = unknown, R = unknown> = (task: T, context: TaskContext) => R | Promise<R>

/** A worker file's default export, made by {@link defineWorker}. */
export interface WorkerDefinition<T = unknown, R = unknown> {
  readonly kind: 'pgcrew.worker'
  readonly init: (context: WorkerContext) => Promise<TaskHandler<T, R>> | TaskHandler<T, R>
}

/**
 * Define a crew worker: `init` runs once per worker, after pgcrew has discarded any pool the
 * worker inherited or created at import time and reconnected from the master's snapshot.
 *
 * @example
 * export default defineWorker(async ({ db }) => async (task: { id: number }, { tx }) => {
 *   await (tx ?? db).query('update items set done = true where id = $1', [task.id])
 * })
 */
export function defineWorker<T = unknown, R = unknown>(init: WorkerDefinition<T, R>['init']): WorkerDefinition<T, R> {
  return Object.freeze({ kind: 'pgcrew.worker' as const, init })
}

export function isWorkerDefinition(value: unknown): value is WorkerDefinition {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'pgcrew.worker'
}

/**
 * The init hook for a process you start yourself (child_process.fork, node:cluster): discard any
 * Database or pg pool this process made at import time, then reconnect from the master's snapshot.
 * Send the snapshot with `fork(file, { serialization: 'advanced' })` so it arrives intact.
 *
 * @example
 * process.once('message', async ({ snapshot }) => { const db = await initProcess(snapshot); … })
 */
export async function initProcess(snapshot: DatabaseSnapshot, extra: Partial<DatabaseOptions> = {}): Promise<Database> {
  const { Database } = await import('../database/database.ts')
  await discardRealmConnections()
  const db = Database.fromSnapshot(snapshot, { applicationName: `pgcrew process ${process.pid}`, ...extra })
  await db.connect()
  return db
}
