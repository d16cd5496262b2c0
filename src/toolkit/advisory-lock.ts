import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import type pg from 'pg'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { markUnreusable } from '../connect/connect-client.ts'
import { withSettings } from './settings.ts'
import { LockNotAvailable } from '../errors/database-error.ts'
import { holdConnection, run, type ConnectionTarget, type HeldConnection } from './toolkit-target.ts'

/**
 * A lock key: a bigint (or safe integer), a pair of int4s, or a string hashed to a bigint.
 * Where a list of keys is accepted, `[1, 2]` (two numbers) means the one pair key; use `[1n, 2n]` for two keys.
 */
export type AdvisoryKey = bigint | number | readonly [number, number] | string

/** Options of {@link advisoryLock}; every field is optional. */
export interface AdvisoryLockOptions {
  /** Shared locks coexist with each other and exclude exclusive ones. Default false. */
  shared?: boolean
  /** true: wait; false: try once (resolve null when busy); a number: wait at most that many ms. Default true. */
  wait?: boolean | number
  /** 'session' holds the lock (and a connection) until released; 'transaction' until the transaction ends. Default 'session'. */
  scope?: 'session' | 'transaction'
}

type Key = { kind: 'single'; value: bigint } | { kind: 'pair'; a: number; b: number }

const INT8_MIN = -(2n ** 63n)
const INT8_MAX = 2n ** 63n - 1n

/** The bigint a string key locks: the first 8 bytes of its SHA-256, signed (stable across processes and languages). */
export function hashKey(text: string): bigint {
  return BigInt.asIntN(64, createHash('sha256').update(text).digest().readBigUInt64BE(0))
}

function normalizeKey(key: AdvisoryKey): Key {
  if (typeof key === 'string') return { kind: 'single', value: hashKey(key) }
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key)) throw new PgcrewError('INVALID_OPTION', `advisory lock key ${key} is not a safe integer; pass a bigint`)
    return { kind: 'single', value: BigInt(key) }
  }
  if (typeof key === 'bigint') {
    if (key < INT8_MIN || key > INT8_MAX) throw new PgcrewError('INVALID_OPTION', `advisory lock key ${key} does not fit in a bigint`)
    return { kind: 'single', value: key }
  }
  if (Array.isArray(key) && key.length === 2 && key.every((k) => Number.isInteger(k) && k >= -(2 ** 31) && k < 2 ** 31)) {
    return { kind: 'pair', a: key[0], b: key[1] }
  }
  throw new PgcrewError('INVALID_OPTION', 'an advisory lock key is a bigint, a safe integer, a string or a pair of int4s')
}

// One global order for every caller, so two processes locking overlapping key sets cannot deadlock.
function compareKeys(x: Key, y: Key): number {
  if (x.kind !== y.kind) return x.kind === 'single' ? -1 : 1
  if (x.kind === 'single' && y.kind === 'single') return x.value < y.value ? -1 : x.value > y.value ? 1 : 0
  const p = x as Extract<Key, { kind: 'pair' }>,
    q = y as Extract<Key, { kind: 'pair' }>
  return p.a - q.a || p.b - q.b
}

// `[1, 2]` (exactly two numbers) is one int4 pair key; to lock two bigint keys pass `[1n, 2n]`.
function isPair(keys: unknown): boolean {
  return Array.isArray(keys) && keys.length === 2 && keys.every((k) => typeof k === 'number')
}

function keyText(k: Key): string {
  return k.kind === 'single' ? String(k.value) : `${k.a}/${k.b}`
}

function callSql(fn: string, k: Key): [string, unknown[]] {
  return k.kind === 'single' ? [`SELECT ${fn}($1::bigint) AS ok`, [String(k.value)]] : [`SELECT ${fn}($1::int, $2::int) AS ok`, [k.a, k.b]]
}

/**
 * An advisory lock over one or more keys, taken in a fixed order. It is reentrant: `acquire()` again
 * counts up, and the server lock goes away only when `release()` brings the count back to zero.
 * A session lock keeps its connection until then; taken inside a transaction, that is the
 * transaction's connection, kept out of the pool past COMMIT/ROLLBACK until the last release.
 * A transaction lock lasts until COMMIT/ROLLBACK.
 */
export class AdvisoryLock implements AsyncDisposable {
  readonly keys: readonly string[]
  readonly shared: boolean
  readonly scope: 'session' | 'transaction'
  readonly #keys: readonly Key[]
  readonly #target: ConnectionTarget
  readonly #wait: boolean | number
  #count = 0
  #held: HeldConnection | undefined

  /** @internal use {@link advisoryLock} */
  constructor(target: ConnectionTarget, keys: AdvisoryKey | readonly AdvisoryKey[], options: AdvisoryLockOptions = {}) {
    const list = (isPair(keys) || !Array.isArray(keys) ? [keys] : keys) as AdvisoryKey[]
    const normalized = list.map(normalizeKey).sort(compareKeys)
    if (normalized.length === 0) throw new PgcrewError('INVALID_OPTION', 'advisoryLock needs at least one key')
    this.#keys = normalized.filter((k, i) => i === 0 || compareKeys(k, normalized[i - 1]!) !== 0)
    this.keys = Object.freeze(this.#keys.map(keyText))
    this.#target = target
    this.shared = options.shared ?? false
    this.scope = options.scope ?? 'session'
    this.#wait = options.wait ?? true
    if (this.scope !== 'session' && this.scope !== 'transaction') throw new PgcrewError('INVALID_OPTION', `scope must be 'session' or 'transaction', not "${String(this.scope)}"`)
  }

  /** How many times this lock has been acquired and not yet released. */
  get count(): number {
    return this.#count
  }

  get held(): boolean {
    return this.#count > 0
  }

  /** Takes the lock, or counts up when already held. False when `wait: false` and a key is busy. */
  async acquire(): Promise<boolean> {
    // Overlapping first acquires must not each take a connection and a server lock: wait for the first.
    while (this.#acquiring) await this.#acquiring.catch(() => {})
    if (this.#count > 0) {
      this.#count++
      return true
    }
    this.#acquiring = this.#takeOnServer()
    try {
      return await this.#acquiring
    } finally {
      this.#acquiring = undefined
    }
  }

  #acquiring: Promise<boolean> | undefined

  async #takeOnServer(): Promise<boolean> {
    const xact = this.scope === 'transaction'
    // A session lock outlives a transaction it is taken in: it keeps that connection until release.
    const held = await holdConnection(this.#target, { pin: !xact })
    const client = held.client
    if (xact && client.getTransactionStatus?.() !== 'T') {
      await held.release()
      throw new PgcrewError(
        'ADVISORY_LOCK_NEEDS_TRANSACTION',
        "a transaction-scoped advisory lock must be taken inside a transaction (db.transaction(tx => advisoryLock(tx, keys, { scope: 'transaction' })))",
      )
    }
    const lockFn = `pg_${this.#wait === false ? 'try_' : ''}advisory_${xact ? 'xact_' : ''}lock${this.shared ? '_shared' : ''}`
    const taken: Key[] = []
    const lockAll = async (): Promise<boolean> => {
      for (const key of this.#keys) {
        const { rows } = await run<{ ok: boolean | '' }>(client, ...callSql(lockFn, key))
        if (this.#wait === false && rows[0]!.ok !== true) return false
        taken.push(key)
      }
      return true
    }
    try {
      // A timed wait is lock_timeout for just these statements (withSettings restores it, LOCAL inside a transaction).
      const all = typeof this.#wait === 'number' ? await withSettings(client, { lock_timeout: `${Math.max(1, Math.ceil(this.#wait))}ms` }, lockAll) : await lockAll()
      if (!all) {
        await this.#unlock(client, taken)
        await held.release()
        return false
      }
    } catch (error) {
      const unlocked = await this.#unlock(client, taken).then(
        () => true,
        () => false,
      )
      if (!unlocked) {
        // Session locks survive ROLLBACK: a connection we could not unlock (its transaction is
        // aborted) must never be handed to anyone else while it still holds them.
        markUnreusable(client)
      }
      await held.release(!unlocked)
      if (error instanceof LockNotAvailable) {
        throw new LockNotAvailable(error.code, `advisory lock ${this.keys.join(', ')} not acquired within ${String(this.#wait)} ms (another session holds it)`, error, { cause: error })
      }
      throw error
    }
    this.#held = held
    this.#count = 1
    return true
  }

  async #unlock(client: pg.ClientBase, keys: readonly Key[]): Promise<void> {
    // Transaction locks cannot be released early; the transaction's end does it.
    if (this.scope === 'transaction') return
    const fn = `pg_advisory_unlock${this.shared ? '_shared' : ''}`
    for (const key of [...keys].reverse()) await run(client, ...callSql(fn, key))
  }

  /** Counts down; at zero unlocks on the server (session scope) and gives the connection back. */
  async release(): Promise<void> {
    if (this.#count === 0) throw new PgcrewError('ADVISORY_LOCK_NOT_HELD', `advisory lock ${this.keys.join(', ')} is not held`)
    if (--this.#count > 0) return
    const held = this.#held!
    this.#held = undefined
    let broken = false
    await this.#unlock(held.client, this.#keys).catch(() => {
      broken = true
    })
    await held.release(broken)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#count > 0) await this.release()
  }
}

/**
 * Takes an advisory lock; resolves to the held lock, or null when `wait: false` and it is busy.
 * A timeout (`wait: ms`) throws LockNotAvailable.
 *
 * @example
 * await using lock = await advisoryLock(db, 'nightly-import')
 */
export async function advisoryLock(target: ConnectionTarget, keys: AdvisoryKey | readonly AdvisoryKey[], options: AdvisoryLockOptions & { wait: false }): Promise<AdvisoryLock | null>
export async function advisoryLock(target: ConnectionTarget, keys: AdvisoryKey | readonly AdvisoryKey[], options?: AdvisoryLockOptions): Promise<AdvisoryLock>
export async function advisoryLock(target: ConnectionTarget, keys: AdvisoryKey | readonly AdvisoryKey[], options: AdvisoryLockOptions = {}): Promise<AdvisoryLock | null> {
  const lock = new AdvisoryLock(target, keys, options)
  return (await lock.acquire()) ? lock : null
}

const heldHere = new AsyncLocalStorage<Map<string, AdvisoryLock>>()
const targetIds = new WeakMap<object, number>()
let nextTargetId = 1

/**
 * Runs `fn` holding the lock, releasing it afterwards (also on a throw). Nested calls for the same
 * keys on the same target, inside `fn`, reuse the held lock instead of waiting on themselves.
 * With `scope: 'transaction'` on a Database, `fn` runs in a new transaction that holds the lock.
 *
 * @example await withAdvisoryLock(db, ['import', 42n], async () => runImport())
 */
export async function withAdvisoryLock<T>(target: ConnectionTarget, keys: AdvisoryKey | readonly AdvisoryKey[], fn: () => Promise<T>, options: AdvisoryLockOptions = {}): Promise<T> {
  const probe = new AdvisoryLock(target, keys, options)
  const transactional = (target as { transaction?: unknown }).transaction
  if (probe.scope === 'transaction' && typeof transactional === 'function' && !('client' in target)) {
    const db = target as unknown as { transaction<R>(f: (tx: { client: pg.ClientBase }) => Promise<R>): Promise<R> }
    return db.transaction(async (tx) => {
      const lock = await new AdvisoryLock(tx, keys, options).acquire()
      if (!lock) throw new LockNotAvailable('55P03', `advisory lock ${probe.keys.join(', ')} is held by another session`, {})
      // Released by the transaction's end.
      return fn()
    })
  }
  let id = targetIds.get(target as object)
  if (id === undefined) targetIds.set(target as object, (id = nextTargetId++))
  const signature = `${id}|${probe.scope}|${probe.shared}|${probe.keys.join(',')}`
  const outer = heldHere.getStore()
  const existing = outer?.get(signature)
  const lock = existing ?? probe
  if (!(await lock.acquire())) {
    throw new LockNotAvailable('55P03', `advisory lock ${probe.keys.join(', ')} is held by another session`, {})
  }
  const inner = new Map(outer)
  inner.set(signature, lock)
  try {
    return await heldHere.run(inner, fn)
  } finally {
    await lock.release()
  }
}
