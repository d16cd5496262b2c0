import type { AsyncLocalStorage } from 'node:async_hooks'
import { PgcrewClient, type ClientSpec } from '../connect/connect-client.ts'
import type { Pooling } from '../connect/connect-options.ts'
import type { Lease } from './database-executor.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'

/**
 * One connection pinned for everything `db.scope(fn)` runs: session state (SET, temp tables, session
 * advisory locks, LISTEN) is seen by every statement in it, without a transaction around it all.
 * Work of the scope borrows the connection through {@link Scope.lease}; its releases only count
 * down, and the connection itself goes back once, when the scope ends: reset first (DISCARD ALL,
 * then the onConnect hooks again), or destroyed when it cannot be.
 */
export class Scope {
  readonly #lease: Lease
  readonly #spec: ClientSpec
  readonly #pooling: Pooling
  #open = true
  /** Leases lent and not yet given back: still out when the scope ends, the connection cannot be reset under them. */
  #out = 0
  #broken = false
  /**
   * Settles when the transaction open on the connection has ended. One connection holds one
   * transaction: the next waits for it, and so does work of the scope from outside it (on the
   * server it would run inside that transaction).
   */
  #transaction: Promise<void> | undefined
  /** Why the connection died under the scope (the server ended the session, the socket broke). */
  #lost: Error | undefined
  readonly #onLost = (error: Error): void => {
    this.#lost ??= error
    this.#broken = true
  }

  constructor(lease: Lease, spec: ClientSpec, pooling: Pooling) {
    this.#lease = lease
    this.#spec = spec
    this.#pooling = pooling
    lease.client.on('error', this.#onLost)
  }

  /** False once the scope has ended: a timer or stray promise still in its async context uses the pool again. */
  get open(): boolean {
    return this.#open
  }

  /** The scope's connection for one unit of work; `forTransaction` waits its turn and holds it until `ended()`. */
  async lease(forTransaction: boolean): Promise<Lease> {
    while (this.#transaction) await this.#transaction
    // Another connection would not have the scope's session (temp tables, SET, session locks): say so.
    if (this.#lost) {
      throw new PgcrewError(
        'SCOPE_CONNECTION_LOST',
        `the connection of this db.scope() was lost (${this.#lost.message}); the session state it held (temp tables, settings, session locks) went with it, so the scope cannot go on: run it again`,
        { cause: this.#lost },
      )
    }
    let ended: (() => void) | undefined
    if (forTransaction) this.#transaction = new Promise<void>((resolve) => (ended = resolve))
    this.#out++
    let released = false
    return {
      client: this.#lease.client,
      release: async (destroy = false) => {
        if (released) return
        released = true
        this.#out--
        if (destroy) this.#broken = true
      },
      ended: () => {
        if (!ended) return
        ended()
        ended = undefined
        this.#transaction = undefined
      },
    }
  }

  /** End the scope and give the connection back: reset when nothing still uses it, destroyed otherwise. */
  async end(): Promise<void> {
    this.#open = false
    this.#lease.client.off('error', this.#onLost)
    if (this.#out > 0 || this.#transaction || this.#broken) return this.#lease.release(true)
    // Per-transaction mode closes the connection anyway: nothing can reach another borrower.
    if (this.#pooling === 'per-transaction') return this.#lease.release()
    try {
      await resetSession(this.#lease.client as PgcrewClient, this.#spec)
    } catch {
      return this.#lease.release(true)
    }
    return this.#lease.release()
  }
}

/**
 * Undo what a scope did to the session, back to how a fresh connection starts: DISCARD ALL (settings,
 * role, temp tables, advisory locks, LISTEN, prepared statements, cursors), then the onConnect hooks,
 * whose settings are every connection's baseline.
 */
async function resetSession(client: PgcrewClient, spec: ClientSpec): Promise<void> {
  // DISCARD ALL cannot run inside a transaction block; one left open by a raw BEGIN is not ours to end.
  if (client.getTransactionStatus() !== 'I') throw new Error('a transaction is still open')
  await client.query('DISCARD ALL')
  for (const hook of spec.hooks) await hook(client, { params: spec.params })
  // The role and read-only setting are the login's again (DISCARD ALL resets them): safe to share.
  if (client instanceof PgcrewClient) client.tainted = false
}

/** The scope the calling code runs in, if it is still open. */
export function activeScope(context: AsyncLocalStorage<Scope>): Scope | undefined {
  const scope = context.getStore()
  return scope?.open ? scope : undefined
}

/** Run `fn` in a new scope on a connection from `acquire`, ending the scope however `fn` ends. */
export async function runScope<T>(context: AsyncLocalStorage<Scope>, acquire: () => Promise<{ lease: Lease; spec: ClientSpec; pooling: Pooling }>, fn: () => Promise<T>): Promise<T> {
  const { lease, spec, pooling } = await acquire()
  const scope = new Scope(lease, spec, pooling)
  try {
    return await context.run(scope, fn)
  } finally {
    await scope.end()
  }
}
