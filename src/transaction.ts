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

/**
 * A transaction bound to one physical connection. `tx.transaction(fn)` nests as a SAVEPOINT:
 * released on success, rolled back to on error (the outer work survives).
 *
 * @example await db.transaction(async (tx) => { await tx.query('insert …'); await tx.transaction(risky).catch(() => {}) })
 */
export class Transaction {
  #savepoints = 0
  #finished = false

  constructor(
    /** The connection this transaction runs on (for pg-cursor, COPY streams…). */
    readonly client: pg.ClientBase,
    /** 0 for the outermost transaction, 1+ inside savepoints. */
    readonly depth = 0,
    /** The enclosing transaction of a savepoint. */
    readonly parent?: Transaction,
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
    try {
      return await this.client.query<R>(text as string, values)
    } catch (error) {
      throw mapDatabaseError(error)
    }
  }

  /** A nested unit of work as a SAVEPOINT. Isolation options are refused here (only BEGIN takes them). */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
    if (opts.isolation !== undefined || opts.readOnly !== undefined || opts.deferrable !== undefined) {
      throw new PgcrewError('INVALID_OPTION', 'isolation, readOnly and deferrable apply to the outermost transaction only; a nested transaction is a savepoint')
    }
    const name = `pgcrew_sp_${this.depth + 1}_${++this.#savepoints}`
    await this.query(`SAVEPOINT ${name}`)
    this.#assertActive()
    const inner = new Transaction(this.client, this.depth + 1, this)
    try {
      const result = await fn(inner)
      await this.query(`RELEASE SAVEPOINT ${name}`)
      return result
    } catch (error) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => {})
      throw mapDatabaseError(error)
    } finally {
      inner.finish()
    }
  }
}
