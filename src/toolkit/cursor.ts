import type pg from 'pg'
import PgCursor from 'pg-cursor'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { mapDatabaseError } from '../errors/database-error.ts'
import { holdConnection, type ConnectionTarget, type HeldConnection } from './toolkit-target.ts'

/** Options of {@link cursor}; every field is optional. */
export interface CursorOptions {
  /** Rows fetched per round trip while iterating. Default 1000. */
  batchSize?: number
}

const DEFAULTS = Object.freeze({ batchSize: 1000 })

/**
 * A server-side portal read in batches, so memory stays flat however many rows the query returns.
 * Iterate it with `for await` (it closes itself when the loop ends, breaks or throws), or call
 * `read(n)` yourself and `close()` when done.
 *
 * @example
 * for await (const row of cursor(db, 'select * from big where day = $1', [day], { batchSize: 5000 })) consume(row)
 */
export class Cursor<R extends pg.QueryResultRow = any> implements AsyncIterable<R>, AsyncDisposable {
  readonly #target: ConnectionTarget
  readonly #text: string
  readonly #values: readonly unknown[]
  readonly #batchSize: number
  #held: HeldConnection | undefined
  #cursor: PgCursor<R> | undefined
  #opening: Promise<PgCursor<R>> | undefined
  #done = false
  #closed = false

  constructor(target: ConnectionTarget, text: string, values: readonly unknown[] = [], options: CursorOptions = {}) {
    const batchSize = options.batchSize ?? DEFAULTS.batchSize
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new PgcrewError('INVALID_OPTION', `batchSize must be a positive integer, not ${String(batchSize)}`)
    this.#target = target
    this.#text = text
    this.#values = values
    this.#batchSize = batchSize
  }

  /** True once every row has been read or the cursor was closed. */
  get done(): boolean {
    return this.#done || this.#closed
  }

  #open(): Promise<PgCursor<R>> {
    this.#opening ??= (async () => {
      this.#held = await holdConnection(this.#target)
      this.#cursor = this.#held.client.query(new PgCursor<R>(this.#text, [...this.#values]))
      return this.#cursor
    })()
    return this.#opening
  }

  /** The next `n` rows (fewer at the end; an empty array once exhausted). The first call runs the query. */
  async read(n: number = this.#batchSize): Promise<R[]> {
    if (this.#done) return []
    if (this.#closed) throw new PgcrewError('CURSOR_CLOSED', 'this cursor is closed; open a new one to read again')
    let rows: R[]
    try {
      rows = await (await this.#open()).read(n)
    } catch (error) {
      await this.#finish(true)
      throw mapDatabaseError(error)
    }
    if (rows.length < n) {
      this.#done = true
      await this.#finish(false)
    }
    return rows
  }

  /** Closes the portal and gives the connection back. Safe to call more than once. */
  async close(): Promise<void> {
    await this.#finish(false)
  }

  async #finish(broken: boolean): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const cursor = this.#cursor
    if (cursor && !broken) {
      // pg-cursor's close() sends Close + Sync; it fails only when the connection already died.
      await cursor.close().catch(() => {
        broken = true
      })
    }
    await this.#held?.release(broken)
  }

  async *[Symbol.asyncIterator](): AsyncIterator<R> {
    try {
      while (!this.done) {
        const rows = await this.read(this.#batchSize)
        for (const row of rows) yield row
      }
    } finally {
      // Runs on break, return and throw in the consumer's loop: the portal never outlives the loop.
      await this.close()
    }
  }

  /** The rows batch by batch (arrays of up to `batchSize`), for bulk consumers. */
  async *batches(): AsyncGenerator<R[]> {
    try {
      while (!this.done) {
        const rows = await this.read(this.#batchSize)
        if (rows.length > 0) yield rows
      }
    } finally {
      await this.close()
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/** Opens a {@link Cursor} over `text` on the target (a Database borrows one connection until it closes). */
export function cursor<R extends pg.QueryResultRow = any>(target: ConnectionTarget, text: string, values: readonly unknown[] = [], options: CursorOptions = {}): Cursor<R> {
  return new Cursor<R>(target, text, values, options)
}
