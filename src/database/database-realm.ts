import { createRequire } from 'node:module'

// Every Database and every pg-pool that connected in this realm (thread), so a crew worker's init
// hook can throw away what it inherited or what a user module created at import time. Kept on
// globalThis so two copies of pgcrew in one realm share one registry.
const KEY = Symbol.for('pgcrew.realm')

interface Closable {
  close?(): Promise<void>
  end?(): Promise<void>
}

interface Registry {
  items: Set<WeakRef<Closable>>
  /** Each tracked item's entry: connect() runs per query, the registry must not grow with it. */
  refs: WeakMap<Closable, WeakRef<Closable>>
  /** Drops the entry of an item that was collected without being closed. */
  collected: FinalizationRegistry<WeakRef<Closable>>
  poolPatched: boolean
}

function registry(): Registry {
  const g = globalThis as Record<symbol, Registry | undefined>
  if (!g[KEY]) {
    const items = new Set<WeakRef<Closable>>()
    g[KEY] = { items, refs: new WeakMap(), collected: new FinalizationRegistry((ref) => items.delete(ref)), poolPatched: false }
  }
  return g[KEY]
}

/** Remember a connection holder of this realm (held weakly). */
export function trackInRealm(item: Closable): void {
  const reg = registry()
  if (reg.refs.has(item)) return
  const ref = new WeakRef(item)
  reg.refs.set(item, ref)
  reg.items.add(ref)
  reg.collected.register(item, ref, ref)
}

/** Forget an item that was closed: there is nothing left to discard. */
export function untrackInRealm(item: Closable): void {
  const reg = registry()
  const ref = reg.refs.get(item)
  if (!ref) return
  reg.refs.delete(item)
  reg.items.delete(ref)
  reg.collected.unregister(ref)
}

/** How many connection holders this realm tracks (for tests). */
export function realmSize(): number {
  return registry().items.size
}

/**
 * Make every pg-pool that connects in this realm known to {@link discardRealmConnections}, even one
 * created by a module that knows nothing of pgcrew. Idempotent.
 */
export function trackPgPools(): void {
  const reg = registry()
  if (reg.poolPatched) return
  reg.poolPatched = true
  const Pool = createRequire(import.meta.url)('pg-pool') as { prototype: { connect: (...a: unknown[]) => unknown; end: (...a: unknown[]) => unknown } }
  const connect = Pool.prototype.connect
  Pool.prototype.connect = function (this: Closable, ...args: unknown[]) {
    trackInRealm(this)
    return connect.apply(this, args)
  }
  const end = Pool.prototype.end
  Pool.prototype.end = function (this: Closable, ...args: unknown[]) {
    untrackInRealm(this)
    return end.apply(this, args)
  }
}

/** Close every tracked Database and pool except `keep`; returns how many were discarded. */
export async function discardRealmConnections(keep: ReadonlySet<object> = new Set()): Promise<number> {
  const reg = registry()
  let n = 0
  for (const ref of [...reg.items]) {
    const item = ref.deref()
    if (item) untrackInRealm(item)
    else reg.items.delete(ref)
    if (!item || keep.has(item)) continue
    const ended = (item as { ended?: boolean; ending?: boolean }).ended || (item as { ending?: boolean }).ending
    if (ended) continue
    n++
    await (item.close ? item.close() : item.end?.())?.catch?.(() => {})
  }
  return n
}
