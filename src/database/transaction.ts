import type pg from 'pg'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError, InFailedSqlTransaction, mapDatabaseError } from '../errors/database-error.ts'
import { PgcrewClient } from '../connect/connect-client.ts'
import { beginWithRows } from './begin-with.ts'
import { callerError, runOn } from './database-executor.ts'

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

/**
 * Whether a transaction's first statement can carry its BEGIN: one with parameters (pg sends those
 * in the extended protocol anyway, which takes one statement per Parse) that pgcrew's client does
 * not have to watch (a role switch, DISCARD ALL: its `statement` path looks at those).
 */
function joinsBegin(client: pg.ClientBase, text: string, values: unknown[] | undefined): client is PgcrewClient {
  if (!Array.isArray(values) || values.length === 0) return false
  return client instanceof PgcrewClient && client.joinsBegin(text)
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
  #rolledBack = false
  /** The savepoint open right now. Savepoints nest on the server, so siblings must take turns. */
  #open: Transaction | undefined
  /** Settles when the last savepoint queued so far has ended. */
  #turn: Promise<void> = Promise.resolve()
  /**
   * Statements issued from outside this savepoint while it was open, each noted by where it was
   * issued from (its "home", an enclosing transaction): on the server they ran inside this savepoint,
   * so if it rolls back they are undone too.
   */
  #strays: Transaction[] = []
  /** Set on the outermost transaction when a rollback undid such a statement: it must not commit. */
  #lostWork: string | undefined
  /**
   * The first server error while this savepoint was the innermost one open: from then on the server
   * refuses everything in it until ROLLBACK TO, even when the caller caught the error.
   */
  #failure: DatabaseError | undefined
  /** Holders (session advisory locks) that keep the outermost transaction's connection out of the pool. */
  #pins = 0
  #pinBroken = false
  /** Set when the transaction ended while pinned: gives the connection back once the last pin goes. */
  #giveBackLater: ((broken: boolean) => Promise<void>) | undefined

  readonly #client: pg.ClientBase
  /**
   * The BEGIN not sent yet (an outermost transaction opened lazily): it goes out in one round trip
   * with the first statement (`query` with parameters), or on its own, queued ahead of anything else,
   * as soon as something else needs the connection (`client`, a savepoint). Undefined once sent.
   */
  #pendingBegin: string | undefined
  /** Whether this transaction was opened lazily and its BEGIN has gone out since. */
  #begunLazily = false
  /** A lazily sent BEGIN that failed: the transaction must not commit. */
  #beginError: unknown

  constructor(
    /** The connection this transaction runs on. */
    client: pg.ClientBase,
    /** 0 for the outermost transaction, 1+ inside savepoints. */
    readonly depth = 0,
    /** The enclosing transaction of a savepoint. */
    readonly parent?: Transaction,
    readonly scope: TransactionScope = parent?.scope ?? NO_SCOPE,
    /** For an outermost transaction: the BEGIN to send with its first statement (see #pendingBegin); without it, BEGIN has been sent. */
    begin?: string,
  ) {
    this.#client = client
    this.#pendingBegin = begin
  }

  /**
   * The connection this transaction runs on (for pg-cursor, COPY streams…). Reading it sends a
   * pending BEGIN first: pg runs a connection's queries in the order they were queued.
   */
  get client(): pg.ClientBase {
    // Not once the transaction has ended: its connection may be someone else's by now (the caller's
    // next step refuses with TRANSACTION_FINISHED), and a BEGIN sent there would swallow their work.
    if (this.#pendingBegin !== undefined && this.active) this.#sendBegin()
    return this.#client
  }

  /** Whether BEGIN was held back and has gone out since: the transaction is open (or opening) on the server. */
  get begunLazily(): boolean {
    return this.#begunLazily
  }

  /** Whether a BEGIN is still held back: nothing of this transaction has reached the server. */
  get beginPending(): boolean {
    return this.#pendingBegin !== undefined
  }

  /** A held-back BEGIN that failed once sent. */
  get beginError(): unknown {
    return this.#beginError
  }

  /** The held-back BEGIN, taken out to be sent now. */
  #takeBegin(): string {
    const begin = this.#pendingBegin!
    this.#pendingBegin = undefined
    this.#begunLazily = true
    return begin
  }

  #sendBegin(): void {
    const answered = runOn(this.#client, this.#takeBegin())
    answered.catch((error: unknown) => (this.#beginError ??= error))
    if (this.#client instanceof PgcrewClient) this.#client.beginSent(answered)
  }

  /** False once the outermost transaction has committed or rolled back: its connection is gone. */
  get active(): boolean {
    return !this.#finished && (this.parent?.active ?? true)
  }

  /**
   * Called by the Database when the transaction ends (nested ones share the flag through the root);
   * `rolledBack` when it ends by a rollback.
   */
  finish(rolledBack = false): void {
    this.#finished = true
    if (rolledBack) this.#rolledBack = true
  }

  /**
   * True when code running in this savepoint's context must not go on outside it: this savepoint,
   * or an enclosing one, or the transaction itself, ended by a rollback. (Code started directly in
   * the outermost transaction, such as a timer, is not held back: it runs on its own afterwards.)
   */
  get undone(): boolean {
    if (this.depth === 0) return false
    for (let t: Transaction | undefined = this; t && !t.active; t = t.parent) if (t.#rolledBack) return true
    return false
  }

  /**
   * Why this (outermost) transaction must not commit: a savepoint's rollback undid a statement that
   * was issued outside it while it was open. The Database rolls back instead, with this message.
   */
  get lostWork(): string | undefined {
    return this.#lostWork
  }

  /**
   * Keeps this transaction's connection from going back to the pool, even after the transaction
   * ends, until the returned function is called: session state such as a session advisory lock
   * outlives COMMIT and ROLLBACK, and must never reach the next borrower. `broken` discards it.
   */
  pin(): (broken?: boolean) => Promise<void> {
    const root = this.#root()
    root.#pins++
    let unpinned = false
    return async (broken = false) => {
      if (unpinned) return
      unpinned = true
      if (broken) root.#pinBroken = true
      if (--root.#pins > 0 || !root.#giveBackLater) return
      const giveBack = root.#giveBackLater
      root.#giveBackLater = undefined
      await giveBack(root.#pinBroken)
    }
  }

  /** Whether something holds this transaction's connection past its end (see pin). */
  get pinned(): boolean {
    return this.#root().#pins > 0
  }

  /** Called by the Database when the transaction has ended: gives the connection back now, or at the last unpin. */
  giveBack(giveBack: (broken: boolean) => Promise<void>): Promise<void> {
    if (this.#pins === 0) return giveBack(this.#pinBroken)
    this.#giveBackLater = giveBack
    return Promise.resolve()
  }

  #root(): Transaction {
    let t: Transaction = this
    while (t.parent) t = t.parent
    return t
  }

  #assertActive(): void {
    if (!this.active) {
      throw new PgcrewError('TRANSACTION_FINISHED', 'this transaction has already ended (a query outlived its transaction, e.g. from a timer); await all work inside the transaction function')
    }
  }

  /** The innermost savepoint open below this transaction right now, if any. */
  #innermostOpen(): Transaction | undefined {
    let open = this.#open
    while (open && open.#open) open = open.#open
    return open
  }

  /** The transaction the calling code runs inside, if it still is open (a timer may outlive it). */
  #caller(): Transaction | undefined {
    let t = this.scope.current()
    while (t && !t.active) t = t.parent
    return t
  }

  /**
   * Called before anything runs on this transaction's connection (a statement, COPY, a cursor, a
   * prepared statement…). From outside an open savepoint the work runs inside it on the server.
   * Waiting could deadlock (the savepoint may be awaiting this very work), so it runs, and the
   * savepoint keeps a note: if it rolls back, the outer transaction will refuse to commit.
   */
  noteUse(): void {
    this.#assertActive()
    const open = this.#innermostOpen()
    if (!open) return
    // Where the work comes from: the caller's own savepoint when it runs inside this transaction.
    const caller = this.#caller()
    const home = caller && within(caller, this) ? caller : this
    if (home !== open) open.#strays.push(home)
  }

  /** Run a query inside this transaction. */
  async query<R extends pg.QueryResultRow = any>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
    this.noteUse()
    try {
      const client = this.#client
      if (this.#pendingBegin !== undefined && typeof text === 'string' && joinsBegin(client, text, values)) {
        // The first statement, with parameters (so in the extended protocol in any case): BEGIN goes with it.
        return (await beginWithRows(client, this.#takeBegin(), text, values!)) as pg.QueryResult<R>
      }
      const c = this.client
      return await (typeof text === 'string' ? runOn<R>(c, text, values) : c.query<R>(text, values))
    } catch (error) {
      const mapped = callerError(error)
      // The statement ran in whichever savepoint is innermost on the server, not necessarily this one.
      if (mapped instanceof DatabaseError) (this.#innermostOpen() ?? this).#failure ??= mapped
      throw mapped
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
    // Called on this transaction from code running inside one of its savepoints: on the server it
    // can only nest there, so it does (waiting for that savepoint to end would wait for itself).
    const caller = this.#caller()
    if (this.#open && caller && caller !== this && within(caller, this.#open)) return caller.transaction(fn, opts)
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
    this.#assertActive()
    const name = `pgcrew_sp_${this.depth + 1}_${++this.#savepoints}`
    const inner = new Transaction(this.client, this.depth + 1, this)
    // Open from before the SAVEPOINT is sent: a statement from outside sent meanwhile lands in it.
    this.#open = inner
    try {
      let result: T
      try {
        await this.client.query(`SAVEPOINT ${name}`)
        result = await this.scope.run(inner, () => fn(inner))
        // The transaction may have ended meanwhile (a sibling failed it): its connection is not ours.
        this.#assertActive()
      } catch (error) {
        await this.#rollBackTo(inner, name)
        throw mapDatabaseError(error)
      }
      // The function returned, but a statement in it failed and the error was caught: the server now
      // refuses everything until ROLLBACK TO, so RELEASE would fail and take the enclosing work with it.
      // (A failure that came by another path, such as COPY, shows in the status once its ReadyForQuery is in.)
      if (inner.#failure || this.client.getTransactionStatus?.() === 'E') {
        await this.#rollBackTo(inner, name)
        throw swallowed(inner.#failure)
      }
      // Closed before RELEASE is sent: what is sent from now on runs after it, in this transaction.
      // What strayed into the savepoint is now inside the enclosing one, unless it came from there.
      this.#open = undefined
      inner.finish()
      const strays = inner.#strays.filter((home) => home !== this)
      try {
        await this.client.query(`RELEASE SAVEPOINT ${name}`)
      } catch (error) {
        const mapped = mapDatabaseError(error)
        // A failure the bookkeeping could not see (its status not in yet): undo the savepoint instead.
        // Anything else (a lost connection) leaves its work unknown: code still in it must stop.
        if (!(mapped instanceof InFailedSqlTransaction) || !this.active) {
          inner.finish(true)
          throw mapped
        }
        await this.#rollBackTo(inner, name)
        throw swallowed(undefined, mapped)
      }
      this.#strays.push(...strays)
      return result
    } finally {
      this.#open = undefined
      inner.finish()
    }
  }

  /** Ends `inner` by ROLLBACK TO its savepoint; a no-op on the server once this transaction has ended. */
  async #rollBackTo(inner: Transaction, name: string): Promise<void> {
    // Closed before ROLLBACK TO is sent, for the same reason as RELEASE; marked, so that code still
    // running inside it stops instead of going on in the enclosing transaction.
    this.#open = undefined
    inner.finish(true)
    if (!this.active) return
    const undone = inner.#strays.length > 0
    await this.client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => {})
    if (undone) {
      this.#root().#lostWork ??=
        'a statement issued on an enclosing transaction while a savepoint was open ran inside that savepoint, and the savepoint rolled back, undoing it; await each savepoint before issuing statements outside it'
    }
  }
}

/** The rejection of a savepoint whose function caught a failed statement's error and returned. */
function swallowed(failure: DatabaseError | undefined, cause: unknown = failure): InFailedSqlTransaction {
  const what = failure ? `a statement inside it failed (${failure.code}: ${failure.message})` : 'a statement inside it failed'
  return new InFailedSqlTransaction(
    '25P02',
    `savepoint rolled back: ${what} and its error was caught, which leaves the savepoint unusable; its work is undone and the enclosing transaction goes on. Let the error propagate out of the savepoint to handle it there`,
    {},
    { cause },
  )
}
