// The job engine under a distributed run: graphile-worker 0.17 (the line that runs on Node 20; 0.18
// needs Node 22), on a pg.Pool of the run's own Database, its queue in its own schema.
import { randomBytes } from 'node:crypto'
import type pg from 'pg'
import { Logger, makeWorkerUtils, type LogLevel, type WorkerUtils } from 'graphile-worker'
import type { Database } from '../database/database.ts'
import { withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import { quoteIdent } from '../toolkit/quote.ts'

/** The engine's side of one machine: its pool, graphile-worker's utilities, where the queue lives. */
export interface Engine {
  readonly pool: pg.Pool
  readonly utils: WorkerUtils
  readonly schema: string
  /** This machine's tag: every session it opens is named `pgcrew <tag> …`. */
  readonly tag: string
  close(): Promise<void>
}

/** A random tag for this machine's sessions (`m` and 8 hex digits). */
export function machineTag(): string {
  return `m${randomBytes(4).toString('hex')}`
}

/** The pattern every tagged session's application_name matches (a machine of some distributed run). */
export const TAGGED_SESSION = '^pgcrew m[0-9a-f]{8} '

/** The engine task that runs a pipeline's jobs: one per pipeline, so a machine fetches only its pipeline's jobs. */
export function taskIdentifier(pipeline: string): string {
  return `pgcrew:${pipeline}`
}

/** What a job carries: a few of the pipeline's tasks, as JSON. */
export interface JobPayload {
  tasks: Array<{ key: string | number } & Record<string, unknown>>
}

/**
 * graphile-worker's log lines: warnings and errors go to `warn` (an engine that cannot reach the
 * server says so there), the rest is its own business.
 */
export function engineLogger(warn: (line: string) => void): Logger {
  return new Logger(() => (level: LogLevel, message: string) => {
    // Its pool-size advice counts a connection per job; with the local queue, a few serve them all.
    if (message.includes('smaller than concurrency')) return
    const name = level as string
    if (name === 'error' || name === 'warning') warn(`engine ${name}: ${message}`)
  })
}

/**
 * Open the engine: its pool (counted in the machine's budget), and its schema created or migrated.
 * Machines that start together take turns at the migration (an advisory lock): graphile-worker's
 * own guard against a concurrent migration fails one of them instead of waiting.
 */
export async function openEngine(db: Database, options: { schema: string; connections: number; tag: string; logger: Logger; retry: ConnectionRetryOptions }): Promise<Engine> {
  const pool = await db.pgPool({ max: options.connections, applicationName: `pgcrew ${options.tag} engine` })
  // A client's errors are already caught (PgcrewClient); graphile-worker wants to see a listener here.
  pool.on('connect', () => {})
  try {
    const utils = await withConnectionRetry(
      () => db.withAdvisoryLock(`pgcrew.distributed.migrate:${options.schema}`, () => makeWorkerUtils({ pgPool: pool, schema: options.schema, logger: options.logger })),
      options.retry,
    )
    return {
      pool,
      utils,
      schema: options.schema,
      tag: options.tag,
      async close() {
        await Promise.resolve(utils.release()).catch(() => {})
        await pool.end().catch(() => {})
      },
    }
  } catch (error) {
    await pool.end().catch(() => {})
    throw error
  }
}

/** The engine's jobs view, quoted. */
export function jobsView(schema: string): string {
  return `${quoteIdent(schema)}.jobs`
}
