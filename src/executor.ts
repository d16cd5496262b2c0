import type pg from 'pg'
import Pool from 'pg-pool'
import { clientConfig, connectClient, PgcrewClient, type ClientSpec } from './pg-client.ts'
import type { Pooling } from './options.ts'

/** A physical connection on loan; `release(true)` destroys it instead of reusing it. */
export interface Lease {
  readonly client: pg.ClientBase
  release(destroy?: boolean): void | Promise<void>
}

/** Hands out connections: from a pg-pool, or a fresh one per unit of work. */
export interface Executor {
  readonly pooling: Pooling
  readonly spec: ClientSpec
  acquire(): Promise<Lease>
  /** Connections open right now (idle + busy). */
  readonly totalCount: number
  end(): Promise<void>
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

class PooledExecutor implements Executor {
  readonly pooling = 'pooled' as const
  readonly #pool: Pool<PgcrewClient>

  constructor(
    readonly spec: ClientSpec,
    readonly settings: PoolSettings,
  ) {
    const hooks = spec.hooks
    const params = spec.params
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

  async acquire(): Promise<Lease> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.#pool.connect()
      const onError = (): void => {}
      // A checked-out client has no pool listener: keep a server-side kill from becoming an uncaught error.
      client.on('error', onError)
      if (this.settings.prePing && attempt < this.settings.max) {
        try {
          await client.query('SELECT 1')
        } catch {
          client.removeListener('error', onError)
          client.release(true)
          continue
        }
      }
      let released = false
      return {
        client,
        release: (destroy?: boolean) => {
          if (released) return
          released = true
          client.removeListener('error', onError)
          client.release(destroy || !reusable(client) ? true : undefined)
        },
      }
    }
  }

  async end(): Promise<void> {
    if (!this.#pool.ended && !this.#pool.ending) await this.#pool.end()
  }
}

class PerTransactionExecutor implements Executor {
  readonly pooling = 'per-transaction' as const
  readonly #open = new Set<PgcrewClient>()

  constructor(readonly spec: ClientSpec) {}

  get totalCount(): number {
    return this.#open.size
  }

  async acquire(): Promise<Lease> {
    const client = await connectClient(this.spec)
    this.#open.add(client)
    let released = false
    return {
      client,
      release: async () => {
        if (released) return
        released = true
        this.#open.delete(client)
        // Always closed, even after an error: per-transaction mode never keeps a backend between units.
        await client.end().catch(() => {})
      },
    }
  }

  async end(): Promise<void> {
    await Promise.all([...this.#open].map((c) => c.end().catch(() => {})))
    this.#open.clear()
  }
}

/** Build the executor for a pooling mode. */
export function createExecutor(pooling: Pooling, spec: ClientSpec, settings: PoolSettings): Executor {
  return pooling === 'pooled' ? new PooledExecutor(spec, settings) : new PerTransactionExecutor(spec)
}
