import type pg from 'pg'
import { mapDatabaseError } from '../errors/database-error.ts'

/** Anything that lends out one physical connection for a callback: a `Database`. */
export interface ClientSource {
  withClient<T>(fn: (client: pg.ClientBase) => Promise<T>, options?: WithClientOptions): Promise<T>
}

/** Options of `withClient`. */
export interface WithClientOptions {
  /**
   * The callback leaves session state behind (a session advisory lock): run inside a transaction,
   * that transaction's connection stays out of the pool until the callback returns, even when the
   * transaction ends first. Default false.
   */
  pin?: boolean
}

/**
 * Where a toolkit function runs: a `Database` (it borrows one connection), a `Transaction` (its
 * connection, inside the transaction), or a node-postgres client you already hold.
 */
export type ConnectionTarget = ClientSource | { readonly client: pg.ClientBase } | pg.ClientBase

function isClientSource(target: ConnectionTarget): target is ClientSource {
  return typeof (target as Partial<ClientSource>).withClient === 'function'
}

/** The connection a transaction or client target already holds, or undefined for a Database. */
export function heldClient(target: ConnectionTarget): pg.ClientBase | undefined {
  if (isClientSource(target)) return undefined
  const inner = (target as { client?: pg.ClientBase }).client
  return inner !== undefined && typeof inner.query === 'function' ? inner : (target as pg.ClientBase)
}

/** Runs `fn` on one physical connection of the target (borrowed from a Database for the call). */
/** A Transaction target is told before its connection is used (savepoint bookkeeping). */
function noteUse(target: ConnectionTarget): void {
  ;(target as { noteUse?: () => void }).noteUse?.()
}

export async function onOneClient<T>(target: ConnectionTarget, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  const held = heldClient(target)
  if (held) {
    noteUse(target)
    return fn(held)
  }
  return (target as ClientSource).withClient(fn)
}

/** A connection kept beyond one callback (a lock, a cursor, a listener); give it back exactly once. */
export interface HeldConnection {
  readonly client: pg.ClientBase
  /** Gives the connection back; `broken` makes the pool discard it instead of reusing it. */
  release(broken?: boolean): Promise<void>
}

/**
 * Borrows a connection and keeps it until `release()`. On a Database this parks a `withClient`
 * callback, so the Database's own bookkeeping (pool slot, per-transaction close) still applies.
 */
export async function holdConnection(target: ConnectionTarget, options: WithClientOptions = {}): Promise<HeldConnection> {
  const held = heldClient(target)
  if (held) {
    noteUse(target)
    // A Transaction's connection goes back to the pool when it ends; a pin keeps it until release.
    const pin = options.pin ? (target as { pin?: () => (broken?: boolean) => Promise<void> }).pin?.() : undefined
    return { client: held, release: async (broken) => pin?.(broken) }
  }
  return new Promise<HeldConnection>((resolveHold, rejectHold) => {
    let finish!: (broken: boolean) => void
    const parked = new Promise<boolean>((resolve) => {
      finish = resolve
    })
    let handed = false
    const done = (target as ClientSource).withClient(async (client) => {
      handed = true
      resolveHold({
        client,
        release: async (broken = false) => {
          finish(broken)
          await done.catch(() => {})
        },
      })
      // Throwing tells withClient the connection is unusable, so it is destroyed rather than pooled.
      if (await parked) throw new Error('connection given back as broken')
    }, options)
    done.catch((error: unknown) => {
      if (!handed) rejectHold(mapDatabaseError(error))
    })
  })
}

/** `client.query` with server errors mapped to typed DatabaseErrors. */
export async function run<R extends pg.QueryResultRow = any>(client: pg.ClientBase, text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(text as string, values)
  } catch (error) {
    throw mapDatabaseError(error)
  }
}
