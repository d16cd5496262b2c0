import type pg from 'pg'
import Pool from 'pg-pool'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError, isServerError, mapDatabaseError } from '../errors/database-error.ts'
import type { Pooling } from '../connect/connect-options.ts'
import { clientConfig, connectClient, PgcrewClient, type ClientSpec } from '../connect/connect-client.ts'

/** A physical connection on loan; `release(true)` destroys it instead of reusing it. */
export interface Lease {
  readonly client: pg.ClientBase
  release(destroy?: boolean): Promise<void>
  /** Told when the transaction run on this lease has ended (its release may come later, after the last pin). */
  ended?(): void
}

/** Hands out connections: from a pg-pool, or a fresh one per unit of work. */
export interface Executor {
  readonly pooling: Pooling
  readonly spec: ClientSpec
  acquire(): Promise<Lease>
  /**
   * One statement on a connection of its own, given back before the promise settles (destroyed when
   * the statement broke it). Rejects with the driver's error as it is: the caller maps it.
   */
  statement(text: string, values: unknown[] | undefined): Promise<pg.QueryResult>
  /** Connections open right now (idle + busy). */
  readonly totalCount: number
  /**
   * Stop lending. Work in flight may finish for up to `graceMillis`; what is still on loan then (a
   * forgotten lock or cursor) is destroyed. Resolves with how many connections had to be destroyed.
   */
  end(graceMillis: number): Promise<number>
}

export interface PoolSettings {
  max: number
  idleTimeoutMillis: number
  connectionTimeoutMillis: number
  maxLifetimeSeconds: number
  prePing: boolean
  /** Told about errors of idle connections (the pool has already dropped them). */
  onIdleError: (error: Error) => void
}

/** How a borrowed client goes back: reused, destroyed politely, or cut off (`force`: no round trip). */
type GiveBack = (destroy: boolean, force: boolean) => Promise<void> | void

interface Borrowed {
  client: pg.ClientBase
  giveBack: GiveBack
}

/** How borrowNow() hands over a connection, or why there is none. */
type BorrowCallback = (error: Error | undefined, borrowed?: Borrowed) => void

/**
 * A failed statement's error as the caller sees it: a server error as its typed DatabaseError, and a
 * driver error (made in a socket callback) with the stack of the code awaiting it, as pg's own
 * promise gives it. Call it in the awaiting async function's catch.
 */
export function callerError(error: unknown): unknown {
  const mapped = mapDatabaseError(error)
  if (mapped === error && error instanceof Error && !(error instanceof PgcrewError)) Error.captureStackTrace(error)
  return mapped
}

/** A statement on a lent client, without the stack-capturing layer of PgcrewClient.query: for callers that map errors with {@link callerError}. */
export function runOn<R extends pg.QueryResultRow>(client: pg.ClientBase, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  return (client instanceof PgcrewClient ? client.run(text, values) : client.query(text, values)) as Promise<pg.QueryResult<R>>
}

/** A server error leaves the connection usable; anything else (socket, timeout) may not have. */
export function isServerErrorOnly(error: unknown): boolean {
  return (error instanceof DatabaseError || isServerError(error)) && !/^(08|57P)/.test(error.code)
}

const noop = (): void => {}

/** What a release that had nothing to wait for returns (no promise made per release). */
const DONE: Promise<void> = Promise.resolve()

/** A client may go back to the pool only when it is idle, healthy and still in the state we made it. */
function reusable(client: pg.ClientBase): boolean {
  const c = client as unknown as PgcrewClient
  return c.getTransactionStatus() === 'I' && !c.tainted
}

/** Close the socket without waiting for the server: the forced path must not hang on a stuck backend. */
function cutOff(client: pg.ClientBase): void {
  ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}

function closing(): PgcrewError {
  return new PgcrewError('CLOSED', 'this connection pool is closing; use the Database again after it has switched, or create a new one')
}

const FORCE_BACK = Symbol('pgcrew.forceBack')
/** A client on loan carries how to take it back by force (end() after its grace). */
type OnLoan = pg.ClientBase & { [FORCE_BACK]?: (destroy: boolean, force: boolean) => Promise<void> | void }

/** The bookkeeping both modes share: which leases are out, and waiting for them at the end. */
abstract class LeasingExecutor implements Executor {
  abstract readonly pooling: Pooling
  abstract readonly totalCount: number
  /**
   * The clients on loan, each with its force-back under FORCE_BACK. Not a Map from client to
   * force-back: a Map keeps a deleted entry's value until it rehashes, so each statement's closures
   * (and through them its result) outlived the statement, and the young-generation GC copied and
   * promoted ~800 bytes per statement (measured: 4× its pause time per SELECT 1, which cost
   * db.query ~10 % against a raw pg.Pool). A property on the client is overwritten by the next loan.
   */
  readonly #leases = new Set<pg.ClientBase>()
  #drained: (() => void) | undefined
  #ending = false
  /**
   * The acquires still waiting for a connection; end() rejects them. (One entry per waiter, removed
   * when it settles: racing every acquire against one shared never-settling promise instead would
   * leave a reaction on it per query, a leak of about 700 bytes per statement.)
   */
  readonly #waiters = new Set<(error: Error) => void>()

  constructor(readonly spec: ClientSpec) {}

  protected abstract borrow(): Promise<{ client: pg.ClientBase; giveBack: GiveBack }>
  protected abstract shutdown(): Promise<void>

  /**
   * Borrow a connection and hand it to `callback`. Callback-style so that acquire() and statement()
   * make one promise each: an async layer per step costs a promise and a microtask turn per statement.
   */
  protected borrowNow(callback: BorrowCallback): void {
    this.borrow().then(
      (borrowed) => callback(undefined, borrowed),
      (error: Error) => callback(error),
    )
  }

  /** Wait for a connection; end() fails the wait, and what arrives after that goes straight back, destroyed. */
  #borrowUnlessEnding(onError: (error: Error) => void, onBorrowed: (borrowed: Borrowed) => void): void {
    if (this.#ending) return onError(closing())
    this.#waiters.add(onError)
    this.borrowNow((error, borrowed) => {
      const waiting = this.#waiters.delete(onError)
      if (error) return onError(error)
      if (!waiting) return void Promise.resolve(borrowed!.giveBack(true, true)).catch(noop)
      onBorrowed(borrowed!)
    })
  }

  /** Count a borrowed client as lent until `finish` gives it back (or end() forces it back). */
  #lend({ client, giveBack }: Borrowed): (destroy: boolean, force: boolean) => Promise<void> | void {
    // A PgcrewClient keeps a no-op 'error' listener for life; another client lent has no pool listener,
    // and a server-side kill must not become an uncaught error.
    const onError = client instanceof PgcrewClient ? undefined : noop
    if (onError) client.on('error', onError)
    let released = false
    const finish = (destroy: boolean, force: boolean): Promise<void> | void => {
      if (released) return
      released = true
      this.#leases.delete(client)
      ;(client as OnLoan)[FORCE_BACK] = undefined
      // A cut-off socket still emits 'error' later: keep the no-op listener on a forced release.
      if (force) cutOff(client)
      else if (onError) client.removeListener('error', onError)
      const back = giveBack(destroy || !reusable(client), force)
      if (back === undefined) return void this.#maybeDrained()
      return back.then(() => this.#maybeDrained())
    }
    ;(client as OnLoan)[FORCE_BACK] = finish
    this.#leases.add(client)
    return finish
  }

  #maybeDrained(): void {
    if (this.#leases.size === 0) this.#drained?.()
  }

  acquire(): Promise<Lease> {
    return new Promise<Lease>((resolve, reject) =>
      this.#borrowUnlessEnding(reject, (borrowed) => {
        const lease: { client: pg.ClientBase; release(destroy?: boolean): Promise<void> } = { client: borrowed.client, release: undefined as never }
        const finish = this.#lend(borrowed)
        lease.release = (destroy = false) => finish(destroy, false) ?? DONE
        resolve(lease)
      }),
    )
  }

  statement(text: string, values: unknown[] | undefined): Promise<pg.QueryResult> {
    return new Promise<pg.QueryResult>((resolve, reject) =>
      this.#borrowUnlessEnding(reject, (borrowed) => {
        const client = borrowed.client as PgcrewClient
        const finish = this.#lend(borrowed)
        // Given back before the caller hears of the result, as with acquire() and release().
        const settle = (error: Error | null, result?: pg.QueryResult): void => {
          const back = finish(error !== null && !isServerErrorOnly(error), false)
          const report = error ? () => reject(error) : () => resolve(result!)
          if (back === undefined) report()
          else back.then(report, report)
        }
        try {
          client.statement(text, values, settle)
        } catch (error) {
          settle(error as Error)
        }
      }),
    )
  }

  /** Called as end() starts: give up on anything still waiting for a connection. */
  protected onEnding(): void {}

  async end(graceMillis: number): Promise<number> {
    this.#ending = true
    for (const stop of [...this.#waiters]) {
      // Forgotten first: a connection that still arrives for it goes straight back, destroyed.
      this.#waiters.delete(stop)
      stop(closing())
    }
    this.onEnding()
    let forced = 0
    if (this.#leases.size > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([new Promise<void>((resolve) => (this.#drained = resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMillis)))])
      clearTimeout(timer)
      forced = this.#leases.size
      await Promise.all([...this.#leases].map((client) => (client as OnLoan)[FORCE_BACK]?.(true, true)))
    }
    await this.shutdown()
    return forced
  }
}

class PooledExecutor extends LeasingExecutor {
  readonly pooling = 'pooled' as const
  readonly #pool: Pool<PgcrewClient>
  /** Clients being pinged (checked out, not yet lent): end() cuts them off, a stuck ping must not hold it. */
  readonly #pinging = new Set<pg.ClientBase>()

  constructor(
    spec: ClientSpec,
    readonly settings: PoolSettings,
  ) {
    super(spec)
    const { hooks, params, prepareStatements } = spec
    // pg-pool builds clients itself; this subclass carries our hooks into each one.
    const Client = class extends PgcrewClient {
      constructor(config: pg.ClientConfig) {
        super(config, hooks, params, prepareStatements)
      }
    }
    this.#pool = new Pool<PgcrewClient>({
      ...clientConfig(spec),
      Client: Client as never,
      max: settings.max,
      idleTimeoutMillis: settings.idleTimeoutMillis,
      connectionTimeoutMillis: settings.connectionTimeoutMillis,
      maxLifetimeSeconds: settings.maxLifetimeSeconds,
    } as never)
    // An idle connection killed by the server emits here; without a listener it would crash the process.
    this.#pool.on('error', (error) => settings.onIdleError(error))
  }

  get totalCount(): number {
    return this.#pool.totalCount
  }

  protected override borrowNow(callback: BorrowCallback): void {
    if (this.settings.prePing) return super.borrowNow(callback)
    // pg-pool's callback form: no promise of its own.
    this.#pool.connect((error, client) => (error ? callback(error) : callback(undefined, { client: client!, giveBack: (destroy) => client!.release(destroy ? true : undefined) })))
  }

  protected async borrow(): Promise<{ client: pg.ClientBase; giveBack: GiveBack }> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.#pool.connect()
      if (this.settings.prePing && attempt < this.settings.max) {
        // A checked-out client has no pool listener; a reset during the ping must not crash the process.
        client.on('error', noop)
        this.#pinging.add(client)
        try {
          // A backend that does not answer (stopped, network gone) fails the ping in time, not never.
          const timeout = this.settings.connectionTimeoutMillis
          await client.query(timeout > 0 ? { text: 'SELECT 1', query_timeout: timeout } : 'SELECT 1')
        } catch {
          // The socket is cut, not ended politely: a stuck server would never answer the goodbye.
          cutOff(client)
          client.release(true)
          continue
        } finally {
          this.#pinging.delete(client)
          client.removeListener('error', noop)
        }
      }
      return { client, giveBack: (destroy) => client.release(destroy ? true : undefined) }
    }
  }

  protected async shutdown(): Promise<void> {
    for (const client of this.#pinging) cutOff(client)
    if (!this.#pool.ended && !this.#pool.ending) await this.#pool.end()
  }
}

class PerTransactionExecutor extends LeasingExecutor {
  readonly pooling = 'per-transaction' as const
  #open = 0
  #ending = false
  readonly #waiting = new Set<{ wake: () => void; fail: (error: Error) => void }>()

  constructor(
    spec: ClientSpec,
    readonly settings: PoolSettings,
  ) {
    super(spec)
  }

  get totalCount(): number {
    return this.#open
  }

  /** Wait for a free slot: `max` bounds connections at once in this mode too (a crew's budget counts on it). */
  #slot(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timeout = this.settings.connectionTimeoutMillis
      const waiter = {
        wake: () => {
          clearTimeout(timer)
          this.#waiting.delete(waiter)
          resolve()
        },
        fail: (error: Error) => {
          clearTimeout(timer)
          this.#waiting.delete(waiter)
          reject(error)
        },
      }
      const timer =
        timeout > 0
          ? setTimeout(
              () =>
                waiter.fail(
                  new PgcrewError(
                    'CONNECTION_FAILED',
                    `no connection free within ${timeout} ms: all ${this.settings.max} (max) are in use; raise max, or do not hold one connection while waiting for another`,
                  ),
                ),
              timeout,
            )
          : undefined
      this.#waiting.add(waiter)
    })
  }

  protected async borrow(): Promise<{ client: pg.ClientBase; giveBack: GiveBack }> {
    while (this.#open >= this.settings.max) await this.#slot()
    if (this.#ending) throw closing()
    this.#open++
    let client: PgcrewClient
    try {
      client = await connectClient(this.spec)
    } catch (error) {
      this.#free()
      throw error
    }
    // Always closed, even after an error: per-transaction mode never keeps a backend between units.
    return {
      client,
      giveBack: async (destroy, force) => {
        // A broken or forced connection is cut off: a polite end() waits on a server that may never answer.
        if (destroy || force) cutOff(client)
        else await client.end().catch(noop)
        this.#free()
      },
    }
  }

  #free(): void {
    this.#open--
    this.#waiting.values().next().value?.wake()
  }

  protected override onEnding(): void {
    this.#ending = true
    for (const waiter of [...this.#waiting]) waiter.fail(closing())
  }

  protected async shutdown(): Promise<void> {}
}

/** Build the executor for a pooling mode. */
export function createExecutor(pooling: Pooling, spec: ClientSpec, settings: PoolSettings): Executor {
  return pooling === 'pooled' ? new PooledExecutor(spec, settings) : new PerTransactionExecutor(spec, settings)
}
