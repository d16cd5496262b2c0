// A run's "I am alive" sign, as PostgreSQL itself keeps it: a session advisory lock on a connection of
// its own, beside the Database's pool. Held on a pool connection it took one of the run's own
// connections away for the whole run (with `max: 1`, every ledger query then waited 30 s for a
// connection that never came); runPipeline counts this one in the crew's budget instead.
import type { Database } from '../database/database.ts'
import type { ConnectionRetryOptions } from '../database/connection-retry.ts'
import { SessionLock } from '../database/session-lock.ts'

/** The connections a run's history holds beside the Database's pool (counted in the crew's budget). */
export const HISTORY_CONNECTIONS = 1

export class RunLiveness {
  readonly #lock: SessionLock

  private constructor(lock: SessionLock) {
    this.#lock = lock
  }

  /** Connect and take the lock `key`; throws when the server cannot be reached (the history is then not recorded). */
  static async hold(db: Database, key: bigint, retry: ConnectionRetryOptions = {}): Promise<RunLiveness> {
    // A lost session takes the lock again for as long as the run lives (a reader that finds it free
    // for the crash grace calls the run crashed).
    const lock = await SessionLock.open(db, { applicationName: 'pgcrew run history', retry })
    try {
      await lock.hold(key)
    } catch (error) {
      await lock.close()
      throw error
    }
    return new RunLiveness(lock)
  }

  /** Whether the lock is held right now (false while it is being taken again after a lost session). */
  get held(): boolean {
    return this.#lock.held
  }

  /** Give the lock and the connection back (after the run's end is written). */
  close(): Promise<void> {
    return this.#lock.close()
  }
}
