import type pg from 'pg'
import Pool from 'pg-pool'
import { clientConfig, connectClient, PgcrewClient, type ClientSpec } from './pg-client.ts'
import { PgcrewError } from './errors.ts'
import type { Pooling } from './options.ts'

/** A physical connection on loan; `release(true)` destroys it instead of reusing it. */
export interface Lease {
  readonly client: pg.ClientBase
  release(destroy?: boolean): Promise<void>
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

/** A client may go back to the pool only when it is idle, healthy and still in the state we made it. */
function reusable(client: pg.ClientBase): boolean {
  const c = client as unknown as PgcrewClient
  return c.getTransactionStatus() === 'I' && !c.tainted
}

/** The bookkeeping both modes share: which leases are out, and waiting for them at the end. */
abstract class LeasingExecutor implements Executor {
  abstract readonly pooling: Pooling
  abstract readonly totalCount: number
  readonly #leases = new Set<Lease>()
  #drained: (() => void) | undefined
  #ending = false

  constructor(readonly spec: ClientSpec) {}

  protected abstract borrow(): Promise<{ client: pg.ClientBase; giveBack: (destroy: boolean) => Promise<void> | void }>
  protected abstract shutdown(): Promise<void>

  async acquire(): Promise<Lease> {
    if (this.#ending) throw new PgcrewError('CLOSED', 'this connection pool is closing; use the Database again after it has switched, or create a new one')
    const { client, giveBack } = await this.borrow()
    const onError = (): void => {}
    // A lent client has no pool listener: keep a server-side kill from becoming an uncaught error.
    client.on('error', onError)
    let released = false
    const lease: Lease = {
      client,
      release: async (destroy = false) => {
        if (released) return
        released = true
        this.#leases.delete(lease)
        client.removeListener('error', onError)
        await giveBack(destroy || !reusable(client))
        if (this.#leases.size === 0) this.#drained?.()
      },
    }
    this.#leases.add(lease)
    return lease
  }

  async end(graceMillis: number): Promise<number> {
    this.#ending = true
    let forced = 0
    if (this.#leases.size > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>((resolve) => (this.#drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMillis))),
      ])
      clearTimeout(timer)
      forced = this.#leases.size
      await Promise.all([...this.#leases].map((lease) => lease.release(true)))
    }
    await this.shutdown()
    return forced
  }
}

class PooledExecutor extends LeasingExecutor {
  readonly pooling = 'pooled' as const
  readonly #pool: Pool<PgcrewClient>

  constructor(
    spec: ClientSpec,
    readonly settings: PoolSettings,
  ) {
    super(spec)
    const { hooks, params } = spec
    // pg-pool builds clients itself; this subclass carries our hooks into each one.
    const Client = class extends PgcrewClient {
      constructor(config: pg.ClientConfig) {
        super(config, hooks, params)
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

  protected async borrow(): Promise<{ client: pg.ClientBase; giveBack: (destroy: boolean) => void }> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.#pool.connect()
      if (this.settings.prePing && attempt < this.settings.max) {
        try {
          await client.query('SELECT 1')
        } catch {
          client.release(true)
          continue
        }
      }
      return { client, giveBack: (destroy) => client.release(destroy ? true : undefined) }
    }
  }

  protected async shutdown(): Promise<void> {
    if (!this.#pool.ended && !this.#pool.ending) await this.#pool.end()
  }
}

class PerTransactionExecutor extends LeasingExecutor {
  readonly pooling = 'per-transaction' as const
  #open = 0
  readonly #waiting: Array<() => void> = []

  constructor(
    spec: ClientSpec,
    readonly max: number,
  ) {
    super(spec)
  }

  get totalCount(): number {
    return this.#open
  }

  protected async borrow(): Promise<{ client: pg.ClientBase; giveBack: () => Promise<void> }> {
    // `max` bounds connections at once in this mode too: a crew's budget counts on it.
    while (this.#open >= this.max) await new Promise<void>((resolve) => this.#waiting.push(resolve))
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
      giveBack: async () => {
        await client.end().catch(() => {})
        this.#free()
      },
    }
  }

  #free(): void {
    this.#open--
    this.#waiting.shift()?.()
  }

  protected async shutdown(): Promise<void> {}
}

/** Build the executor for a pooling mode. */
export function createExecutor(pooling: Pooling, spec: ClientSpec, settings: PoolSettings): Executor {
  return pooling === 'pooled' ? new PooledExecutor(spec, settings) : new PerTransactionExecutor(spec, settings.max)
}
