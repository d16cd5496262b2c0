// "This process is alive", as PostgreSQL itself keeps it: a session-level advisory lock held on a
// connection of its own. The lock dies with its session, so another process that finds it free knows
// its holder is gone (a run's history, a machine's engine pool). Lost while its holder lives (a
// killed backend, a server restart), it is taken again at once and then until it is held or closed:
// a holder that gave up after a window would be shown dead while it still works. `gate` is pending
// for as long as the lock is missing, so work that must only happen under the lock can wait on it.
import type pg from 'pg'
import type { Database } from './database.ts'
import { RETRY_DEFAULTS, sleep, withConnectionRetry, type ConnectionRetryOptions } from './connection-retry.ts'
import { backoffMillis } from './retry-backoff.ts'

/** Options of {@link SessionLock.open}; all but the name optional. */
export interface SessionLockOptions {
  /** The lock session's application_name (a budget claim may ride on it). */
  applicationName: string
  /** How the first take of each key retries a lost connection (then it throws). Later takes retry until held. */
  retry?: ConnectionRetryOptions
  /** The lock went with its session; it is being taken again. */
  onLost?: (error: unknown) => void
  /** The lock is held again after a loss, `missingMillis` after it went. */
  onBack?: (missingMillis: number) => void
}

export class SessionLock {
  readonly #pool: pg.Pool
  readonly #options: SessionLockOptions
  #client: pg.PoolClient | undefined
  /** The key wanted, and the one held on the current session. */
  #key: bigint | undefined
  #heldKey: bigint | undefined
  #gate: Promise<void> = Promise.resolve()
  #lostAt: number | undefined
  #closed = false
  /** Aborted by close(): a retake waiting between tries stops at once. */
  readonly #stop = new AbortController()

  private constructor(pool: pg.Pool, options: SessionLockOptions) {
    this.#pool = pool
    this.#options = options
  }

  /**
   * Connect (the session is visible at once, before any key is held); throws at once when the server
   * cannot be reached or is full: a caller inside a budget check retries the whole check, not this.
   */
  static async open(db: Database, options: SessionLockOptions): Promise<SessionLock> {
    const lock = new SessionLock(await db.pgPool({ max: 1, applicationName: options.applicationName }), options)
    try {
      lock.#client = await lock.#connect()
    } catch (error) {
      await lock.close()
      throw error
    }
    return lock
  }

  async #connect(): Promise<pg.PoolClient> {
    const client = await this.#pool.connect()
    client.on('error', (error) => this.#lost(client, error))
    return client
  }

  /**
   * Hold `key` (giving up a key held before): resolves once held; throws when the server stays away
   * for the retry window, or the lock is closed first.
   */
  hold(key: bigint): Promise<void> {
    this.#key = key
    return this.#queue(() => withConnectionRetry(() => this.#take(), this.#options.retry))
  }

  /** Resolved while the lock is held (or before any key was asked for); pending while it is being taken again; rejected once closed during a take. */
  get gate(): Promise<void> {
    return this.#gate
  }

  /** Whether the wanted key is held right now. */
  get held(): boolean {
    return this.#client !== undefined && this.#key !== undefined && this.#heldKey === this.#key
  }

  /** One take at a time on the one session: a loss and a new key queue up behind each other. */
  #queue(take: () => Promise<void>): Promise<void> {
    const next = this.#gate.catch(() => {}).then(take)
    this.#gate = next
    next.catch(() => {})
    return next
  }

  async #take(): Promise<void> {
    if (this.#closed) throw new Error('the session lock was closed')
    const key = this.#key!
    if (this.held) return
    const client = (this.#client ??= await this.#connect())
    try {
      if (this.#heldKey !== undefined) await client.query('SELECT pg_advisory_unlock($1::bigint)', [String(this.#heldKey)])
      this.#heldKey = undefined
      await client.query('SELECT pg_advisory_lock($1::bigint)', [String(key)])
      this.#heldKey = key
    } catch (error) {
      // The 'error' event may have come first (#lost): the session is released once only.
      if (this.#client === client) this.#drop(client)
      throw error
    }
    // Closed while the lock was being taken: nobody gives it back but the end of the session.
    if (this.#closed && this.#client === client) this.#drop(client)
  }

  #drop(client: pg.PoolClient): void {
    this.#client = undefined
    this.#heldKey = undefined
    client.release(true)
  }

  /** The session went: while its holder lives, take the lock again, for as long as it takes. */
  #lost(client: pg.PoolClient, error: unknown): void {
    if (this.#client !== client) return
    this.#drop(client)
    if (this.#closed || this.#key === undefined) return
    this.#lostAt ??= Date.now()
    this.#options.onLost?.(error)
    void this.#queue(() => this.#takeAgain())
  }

  async #takeAgain(): Promise<void> {
    const first = this.#options.retry?.firstDelayMillis ?? RETRY_DEFAULTS.firstDelayMillis
    const cap = this.#options.retry?.maxDelayMillis ?? RETRY_DEFAULTS.maxDelayMillis
    for (let attempt = 1; ; attempt++) {
      // Closed: the gate must not open as if the lock were held.
      if (this.#closed) throw new Error('the session lock was closed')
      try {
        await this.#take()
        break
      } catch {
        // Any error: a lock given up here would show a live holder as dead.
        await sleep(backoffMillis(first, attempt, cap), this.#stop.signal)
      }
    }
    if (this.#lostAt !== undefined && this.held) {
      this.#options.onBack?.(Date.now() - this.#lostAt)
      this.#lostAt = undefined
    }
  }

  /** Give the lock and its session back. A take in progress is not waited for: it sees the lock closed. */
  async close(): Promise<void> {
    this.#closed = true
    this.#stop.abort()
    const client = this.#client
    if (client) {
      this.#client = undefined
      if (this.#heldKey !== undefined) await client.query('SELECT pg_advisory_unlock($1::bigint)', [String(this.#heldKey)]).catch(() => {})
      this.#heldKey = undefined
      client.release(true)
    }
    await this.#pool.end().catch(() => {})
  }
}
