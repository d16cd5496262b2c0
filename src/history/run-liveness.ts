// A run's "I am alive" sign, as PostgreSQL itself keeps it: a session advisory lock on a connection of
// its own, beside the Database's pool. Held on a pool connection it took one of the run's own
// connections away for the whole run (with `max: 1`, every ledger query then waited 30 s for a
// connection that never came); runPipeline counts this one in the crew's budget instead.
import type pg from 'pg'
import type { Database } from '../database/database.ts'
import { withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'

/** The connections a run's history holds beside the Database's pool (counted in the crew's budget). */
export const HISTORY_CONNECTIONS = 1

export class RunLiveness {
  readonly #pool: pg.Pool
  readonly #key: string
  readonly #retry: ConnectionRetryOptions
  #client: pg.PoolClient | undefined
  #closed = false

  private constructor(pool: pg.Pool, key: bigint, retry: ConnectionRetryOptions) {
    this.#pool = pool
    this.#key = key.toString()
    this.#retry = retry
  }

  /** Connect and take the lock `key`; throws when the server cannot be reached (the history is then not recorded). */
  static async hold(db: Database, key: bigint, retry: ConnectionRetryOptions = {}): Promise<RunLiveness> {
    const live = new RunLiveness(await db.pgPool({ max: HISTORY_CONNECTIONS, applicationName: 'pgcrew run history' }), key, retry)
    try {
      await live.#lock()
    } catch (error) {
      await live.close()
      throw error
    }
    return live
  }

  async #lock(): Promise<void> {
    const client = await this.#pool.connect()
    client.on('error', () => this.#lost(client))
    try {
      await client.query('SELECT pg_advisory_lock($1::bigint)', [this.#key])
    } catch (error) {
      client.release(true)
      throw error
    }
    if (this.#closed) return client.release(true)
    this.#client = client
  }

  /** The session went (a server restart, a killed backend): the run still lives, so take the lock again. */
  #lost(client: pg.PoolClient): void {
    if (this.#client !== client) return
    this.#client = undefined
    client.release(true)
    if (this.#closed) return
    // Past the window the run is shown as crashed while it goes on: a wrong status, not a lost task.
    withConnectionRetry(() => this.#lock(), this.#retry).catch(() => {})
  }

  /** Whether the lock is held right now (false while it is being taken again after a lost session). */
  get held(): boolean {
    return this.#client !== undefined
  }

  /** Give the lock and the connection back (after the run's end is written). */
  async close(): Promise<void> {
    // A lock being taken again is not waited for: it gives itself back once it sees the run closed.
    this.#closed = true
    const client = this.#client
    this.#client = undefined
    if (client) {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [this.#key]).catch(() => {})
      client.release()
    }
    await this.#pool.end().catch(() => {})
  }
}
