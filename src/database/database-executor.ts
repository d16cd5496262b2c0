import type pg from 'pg'
import Pool from 'pg-pool'
import { PgcrewError } from '../errors/pgcrew-error.ts'
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

const noop = (): void => {}

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

/** The bookkeeping both modes share: which leases are out, and waiting for them at the end. */
abstract class LeasingExecutor implements Executor {
  abstract readonly pooling: Pooling
  abstract readonly totalCount: number
  readonly #leases = new Map<Lease, GiveBack>()
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

  async acquire(): Promise<Lease> {
    if (this.#ending) throw closing()
    const borrowing = this.borrow()
    let borrowed: { client: pg.ClientBase; giveBack: GiveBack }
    let stop: ((error: Error) => void) | undefined
    try {
      borrowed = await new Promise((resolve, reject) => {
        stop = reject
        this.#waiters.add(reject)
        borrowing.then(resolve, reject)
      })
    } catch (error) {
      // end() started while we waited: whatever arrives later goes straight back, destroyed.
      if (this.#ending) borrowing.then((b) => b.giveBack(true, true), noop)
      throw error
    } finally {
      this.#waiters.delete(stop!)
    }
    const { client, giveBack } = borrowed
    const onError = noop
    // A lent client has no pool listener: keep a server-side kill from becoming an uncaught error.
    client.on('error', onError)
    let released = false
    const finish = async (destroy: boolean, force: boolean): Promise<void> => {
      if (released) return
      released = true
      this.#leases.delete(lease)
      // A cut-off socket still emits 'error' later: keep the no-op listener on a forced release.
      if (force) cutOff(client)
      else client.removeListener('error', onError)
      await giveBack(destroy || !reusable(client), force)
      if (this.#leases.size === 0) this.#drained?.()
    }
    const lease: Lease = { client, release: (destroy = false) => finish(destroy, false) }
    this.#leases.set(lease, (destroy, force) => finish(destroy, force))
    return lease
  }

  /** Called as end() starts: give up on anything still waiting for a connection. */
  protected onEnding(): void {}

  async end(graceMillis: number): Promise<number> {
    this.#ending = true
    for (const stop of [...this.#waiters]) stop(closing())
    this.onEnding()
    let forced = 0
    if (this.#leases.size > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([new Promise<void>((resolve) => (this.#drained = resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMillis)))])
      clearTimeout(timer)
      forced = this.#leases.size
      await Promise.all([...this.#leases.values()].map((forceBack) => forceBack(true, true)))
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
