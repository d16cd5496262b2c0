import type pg from 'pg'
import { PgcrewError } from './errors.ts'
import { mapDatabaseError } from './database-error.ts'

/** Options of `db.transaction`; only the outermost call may set them. */
export interface TransactionOptions {
  isolation?: 'read committed' | 'repeatable read' | 'serializable'
  readOnly?: boolean
  deferrable?: boolean
  /** Re-run the whole function this many times on 40001/40P01. Default 0. */
  retries?: number
  /** First backoff before a retry; doubles each time, with jitter. Default 20. */
  retryDelayMillis?: number
}

const ISOLATION = new Set(['read committed', 'repeatable read', 'serializable'])

/** The BEGIN statement for these options; values are whitelisted, never interpolated raw. */
export function beginStatement(opts: TransactionOptions = {}): string {
  const parts = ['BEGIN']
  if (opts.isolation !== undefined) {
    if (!ISOLATION.has(opts.isolation)) {
      throw new PgcrewError('INVALID_OPTION', `isolation must be one of ${[...ISOLATION].join(', ')}, not "${String(opts.isolation)}"`)
    }
    parts.push(`ISOLATION LEVEL ${opts.isolation.toUpperCase()}`)
  }
  if (opts.readOnly !== undefined) parts.push(opts.readOnly ? 'READ ONLY' : 'READ WRITE')
  if (opts.deferrable !== undefined) parts.push(opts.deferrable ? 'DEFERRABLE' : 'NOT DEFERRABLE')
  return parts.join(' ')
}

/** How a Transaction learns which transaction the running code is inside (the Database's async context). */
export interface TransactionScope {
  /** Run `fn` with `tx` as the current transaction. */
  run<T>(tx: Transaction, fn: () => T): T
  /** The transaction the calling code runs inside, if any. */
  current(): Transaction | undefined
}

const NO_SCOPE: TransactionScope = { run: (_tx, fn) => fn(), current: () => undefined }

/** True when `tx` is `ancestor` or nested inside it. */
function within(tx: Transaction | undefined, ancestor: Transaction): boolean {
  for (let t = tx; t; t = t.parent) if (t === ancestor) return true
  return false
}

/**
 * A transaction bound to one physical connection. `tx.transaction(fn)` nests as a SAVEPOINT:
 * released on success, rolled back to on error (the outer work survives).
 *
 * @example await db.transaction(async (tx) => { await tx.query('insert …'); await tx.transaction(risky).catch(() => {}) })
 */
export class Transaction {
  #savepoints = 0
  #finished = false
  /** The savepoint open right now. Savepoints nest on the server, so siblings must take turns. */
  #open: Transaction | undefined
  /** Settles when the last savepoint queued so far has ended. */
  #turn: Promise<void> = Promise.resolve()

  constructor(
    /** The connection this transaction runs on (for pg-cursor, COPY streams…). */
    readonly client: pg.ClientBase,
    /** 0 for the outermost transaction, 1+ inside savepoints. */
    readonly depth = 0,
    /** The enclosing transaction of a savepoint. */
    readonly parent?: Transaction,
    readonly scope: TransactionScope = parent?.scope ?? NO_SCOPE,
  ) {}

  /** False once the outermost transaction has committed or rolled back: its connection is gone. */
  get active(): boolean {
    return !this.#finished && (this.parent?.active ?? true)
  }

  /** Called by the Database when the transaction ends (nested ones share the flag through the root). */
  finish(): void {
    this.#finished = true
  }

  #assertActive(): void {
    if (!this.active) {
      throw new PgcrewError('TRANSACTION_FINISHED', 'this transaction has already ended (a query outlived its transaction, e.g. from a timer); await all work inside the transaction function')
    }
  }

  /** Run a query inside this transaction. */
  async query<R extends pg.QueryResultRow = any>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
    this.#assertActive()
    // A statement from outside an open savepoint would run inside it on the server, and be undone
    // with it: it waits for the savepoint to end. (From inside, it belongs there.)
    while (this.#open && !within(this.scope.current(), this.#open)) {
      await this.#turn
      this.#assertActive()
    }
    try {
      return await this.client.query<R>(text as string, values)
    } catch (error) {
      throw mapDatabaseError(error)
    }
  }

  /**
   * A nested unit of work as a SAVEPOINT. Isolation options are refused here (only BEGIN takes them).
   * Savepoints of one transaction run one at a time: `Promise.all(items.map((i) => tx.transaction(…)))`
   * runs them in turn, so a failing one undoes only its own work.
   */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    if (opts.isolation !== undefined || opts.readOnly !== undefined || opts.deferrable !== undefined) {
      throw new PgcrewError('INVALID_OPTION', 'isolation, readOnly and deferrable apply to the outermost transaction only; a nested transaction is a savepoint')
    }
    this.#assertActive()
    if (this.#open && within(this.scope.current(), this.#open)) {
      throw new PgcrewError(
        'TRANSACTION_BUSY',
        'this call comes from inside a savepoint of the same transaction and would wait for itself; nest on the transaction your function received (or use db.transaction)',
      )
    }
    const previous = this.#turn
    let endTurn!: () => void
    this.#turn = new Promise((resolve) => (endTurn = resolve))
    try {
      await previous
      return await this.#savepoint(fn)
    } finally {
      endTurn()
    }
  }

  async #savepoint<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const name = `pgcrew_sp_${this.depth + 1}_${++this.#savepoints}`
    await this.query(`SAVEPOINT ${name}`)
    this.#assertActive()
    const inner = new Transaction(this.client, this.depth + 1, this)
    this.#open = inner
    try {
      const result = await this.scope.run(inner, () => fn(inner))
      await this.client.query(`RELEASE SAVEPOINT ${name}`).catch((error: unknown) => {
        throw mapDatabaseError(error)
      })
      return result
    } catch (error) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => {})
      throw mapDatabaseError(error)
    } finally {
      this.#open = undefined
      inner.finish()
    }
  }
}
