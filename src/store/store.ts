// The record store: small typed tables next to a pipeline without an ORM, plus the store's own
// records (config, readings, events, logging sessions) in one schema. `openStore(db)` works on any
// Database, in both pooling modes and inside crew workers; `openStore()` with nothing configured
// starts a PostgreSQL of its own (see store-embedded.ts).
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { Database } from '../database/database.ts'
import type { TempCluster } from '../cluster/temp-cluster.ts'
import { readTableInfo, type TableInfo } from './store-catalog.ts'
import { StoreTable, type Where } from './store-table.ts'
import { createStoreTables, storeNames, storeTablesExist, type StoreNames } from './store-schema.ts'
import { configEntries, deleteConfig, getConfig, setConfig, type ConfigEntry, type SetConfigOptions } from './store-config.ts'
import { addReading, latestReadings, type AddReadingOptions, type LatestOptions, type Reading } from './store-readings.ts'
import { clearEvents, handleEvent, listEvents, logEvent, type EventsOptions, type LogEventOptions, type StoreEvent } from './store-events.ts'
import { deleteSession, flushSessions, listSessions, queueMessage, sessionMessages, startSession, stopSession, type SessionInfo, type SessionMessage } from './store-sessions.ts'
import { checkId } from './store-values.ts'
import { openEmbeddedDatabase } from './store-embedded.ts'

/** Options of {@link openStore}; every field is optional. Defaults: {@link STORE_DEFAULTS}. */
export interface StoreOptions {
  /** The schema of the store's own tables. Default `pgcrew`. */
  schema?: string
  /** Create the store's tables when missing (under an advisory lock: safe to race). Default true. */
  create?: boolean
  /** `addMany` sends this many rows and more through COPY instead of multi-row INSERTs. Default 1000. */
  copyThreshold?: number
  /** Without a Database: keep the data of pgcrew's own PostgreSQL in this directory, between runs. */
  persist?: string
  /** Without a Database: connect with this profile. */
  profile?: string
  /** Without a Database: connect to this connection string. */
  url?: string
  /** Without a Database: the environment that says whether anything is configured. Default `process.env`. */
  env?: NodeJS.ProcessEnv
}

/** The defaults of {@link StoreOptions}, in one place. */
export const STORE_DEFAULTS = Object.freeze({ schema: 'pgcrew', create: true, copyThreshold: 1000 })

const OPTION_KEYS = ['schema', 'create', 'copyThreshold', 'persist', 'profile', 'url', 'env'] as const

/** A session's messages, through the store: for a session started elsewhere (another thread or process). */
export interface StoreSession {
  readonly id: number
  queue(message: unknown): Promise<SessionMessage>
  stop(): Promise<SessionInfo>
  latest(): Promise<SessionMessage | undefined>
  last(count?: number): Promise<SessionMessage[]>
  messages(): Promise<SessionMessage[]>
}

/**
 * The record store. Every call is one or a few statements on the Database (inside `db.transaction`
 * it joins that transaction). "The current session" is this Store object's: the one its own
 * `startSession()` opened. Another thread or process that should write into it gets the id and calls
 * `store.session(id).queue(…)`.
 *
 * @example
 * await using store = await openStore(db)
 * const id = await store.startSession()
 * await store.queue({ step: 'loaded' })
 */
export class Store implements AsyncDisposable {
  readonly db: Database
  readonly schema: string
  readonly #names: StoreNames
  readonly #copyThreshold: number
  readonly #tables = new Map<string, Promise<TableInfo>>()
  readonly #owned: { cluster?: TempCluster } | undefined
  #current: number | undefined
  // queue() calls of this Store land in the order they were made, awaited or not.
  #queueTail: Promise<unknown> = Promise.resolve()
  #closed = false

  /** @internal use openStore() */
  constructor(db: Database, schema: string, copyThreshold: number, owned?: { cluster?: TempCluster }) {
    this.db = db
    this.schema = schema
    this.#names = storeNames(schema)
    this.#copyThreshold = copyThreshold
    this.#owned = owned
  }

  /** The PostgreSQL this store started itself (nothing configured), if any. */
  get server(): TempCluster | undefined {
    return this.#owned?.cluster
  }

  /** Create the store's tables (those missing); `forceDrop` drops them first, with their data. */
  async createTables(options: { forceDrop?: boolean } = {}): Promise<void> {
    this.#open()
    this.#tables.clear()
    await createStoreTables(this.db, this.#names, options)
  }

  /** @internal */
  async ensureTables(): Promise<void> {
    if (!(await storeTablesExist(this.db, this.#names))) await this.createTables()
  }

  /** One of the application's tables (`'items'` or `'schema.items'`); its columns are read once, on first use. */
  table<Row extends Record<string, unknown> = Record<string, unknown>>(name: string): StoreTable<Row> {
    this.#open()
    const info = () => {
      let p = this.#tables.get(name)
      if (!p) {
        p = readTableInfo(this.db, name)
        // A table that does not exist yet may be created later: do not remember the failure.
        p.catch(() => this.#tables.delete(name))
        this.#tables.set(name, p)
      }
      return p
    }
    return new StoreTable<Row>(this.db, name, info, this.#copyThreshold)
  }

  /** `store.table(name).getOrCreate(key, values)`: atomic, one row however many callers race. */
  getOrCreate<Row extends Record<string, unknown> = Record<string, unknown>>(table: string, key: Partial<Row>, values: Partial<Row> = {}): Promise<Row> {
    return this.table<Row>(table).getOrCreate(key, values)
  }

  /** Run `fn` in one transaction: every store call inside it joins it. */
  transaction<T>(fn: (store: this) => Promise<T>): Promise<T> {
    return this.db.transaction(() => fn(this))
  }

  // Config
  getConfig<T = unknown>(key: string): Promise<T | undefined> {
    return getConfig<T>(this.db, this.#names, key)
  }
  setConfig<T = unknown>(key: string, value: T, options: SetConfigOptions = {}): Promise<T> {
    return setConfig(this.db, this.#names, key, value, options)
  }
  deleteConfig(key: string): Promise<boolean> {
    return deleteConfig(this.db, this.#names, key)
  }
  configEntries(): Promise<ConfigEntry[]> {
    return configEntries(this.db, this.#names)
  }

  // Readings
  addReading(series: string, value: number, options: AddReadingOptions = {}): Promise<Reading> {
    return addReading(this.db, this.#names, series, value, options)
  }

  /**
   * `latest({ series, since, limit })`: the latest readings per series (50 each by default), in one
   * statement. `latest(sessionId)`: the last message of a session.
   */
  latest(options?: LatestOptions): Promise<Reading[]>
  latest(session: number): Promise<SessionMessage | undefined>
  async latest(arg: LatestOptions | number = {}): Promise<Reading[] | SessionMessage | undefined> {
    if (typeof arg === 'number') return (await sessionMessages(this.db, this.#names, arg, 1, 'latest()'))[0]
    return latestReadings(this.db, this.#names, arg)
  }

  // Events
  logEvent(description: string, options: LogEventOptions = {}): Promise<StoreEvent> {
    return logEvent(this.db, this.#names, description, options)
  }
  events(options: EventsOptions = {}): Promise<StoreEvent[]> {
    return listEvents(this.db, this.#names, options)
  }
  handle(id: number): Promise<StoreEvent> {
    return handleEvent(this.db, this.#names, id)
  }
  clearEvents(options: { handled?: boolean } = {}): Promise<number> {
    return clearEvents(this.db, this.#names, options)
  }

  // Sessions
  /** The session this Store's `startSession()` opened and has not stopped, if any. */
  get currentSession(): number | undefined {
    return this.#current
  }

  /** Start a session and make it this Store's current one; resolves to its id (never reused). */
  async startSession(options: { name?: string } = {}): Promise<number> {
    this.#current = await startSession(this.db, this.#names, options.name)
    return this.#current
  }

  /** Stop a session (default: the current one, which then is none). */
  async stopSession(id?: number): Promise<SessionInfo> {
    const target = id ?? this.#current
    if (target === undefined) throw noSession('stopSession()')
    const info = await stopSession(this.db, this.#names, target)
    if (target === this.#current) this.#current = undefined
    return info
  }

  /** Queue a message (any JSON value) onto the current session; STORE_NO_SESSION when none is open. */
  queue(message: unknown): Promise<SessionMessage> {
    const id = this.#current
    if (id === undefined) return Promise.reject(noSession('queue()'))
    return this.#queueInto(id, message)
  }

  #queueInto(id: number, message: unknown): Promise<SessionMessage> {
    const next = this.#queueTail.then(() => queueMessage(this.db, this.#names, id, message))
    this.#queueTail = next.catch(() => {})
    return next
  }

  /** A handle on session `id`, started by this Store or elsewhere (the way into a session from a worker thread). */
  session(id: number): StoreSession {
    checkId(id, 'session()')
    return Object.freeze({
      id,
      queue: (message: unknown) => this.#queueInto(id, message),
      stop: () => this.stopSession(id),
      latest: () => this.latest(id),
      last: (count = 10) => this.last(id, count),
      messages: () => this.messages(id),
    })
  }

  /** The last `count` messages of a session (default 10), oldest first. */
  last(id: number, count = 10): Promise<SessionMessage[]> {
    return sessionMessages(this.db, this.#names, id, count, 'last()')
  }
  /** Every message of a session, in the order they were queued. */
  messages(id: number): Promise<SessionMessage[]> {
    return sessionMessages(this.db, this.#names, id, undefined, 'messages()')
  }
  sessions(): Promise<SessionInfo[]> {
    return listSessions(this.db, this.#names)
  }
  async deleteSession(id: number): Promise<boolean> {
    const deleted = await deleteSession(this.db, this.#names, id)
    if (id === this.#current) this.#current = undefined
    return deleted
  }
  /** Delete every session (`{ confirm: true }` required); ids are not reused afterwards. */
  async flush(options: { confirm?: boolean }): Promise<number> {
    const n = await flushSessions(this.db, this.#names, options)
    this.#current = undefined
    return n
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Close the store; a store that connected or started a server itself closes and stops them. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#queueTail
    if (this.#owned) {
      try {
        await this.db.close()
      } finally {
        await this.#owned.cluster?.stop()
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #open(): void {
    if (this.#closed) throw new PgcrewError('CLOSED', 'this store was closed; open a new one with openStore()')
  }
}

function noSession(what: string): PgcrewError {
  return new PgcrewError('STORE_NO_SESSION', `${what}: no session is open in this store; call startSession() first, or store.session(id) for one started elsewhere (another thread)`)
}

function resolveOptions(options: StoreOptions, withDb: boolean): Required<Pick<StoreOptions, 'schema' | 'create' | 'copyThreshold'>> {
  if (typeof options !== 'object' || options === null) throw new PgcrewError('INVALID_OPTION', 'openStore() options must be an object')
  const unknown = Object.keys(options).filter((k) => !(OPTION_KEYS as readonly string[]).includes(k))
  if (unknown.length) throw new PgcrewError('UNKNOWN_OPTION', `openStore(): unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${OPTION_KEYS.join(', ')}`)
  if (withDb) {
    const own = (['persist', 'profile', 'url', 'env'] as const).filter((k) => options[k] !== undefined)
    if (own.length) throw new PgcrewError('INVALID_OPTION', `openStore(db, …): ${own.join(', ')} choose the server of a store without a Database; this store uses the Database given`)
  }
  const schema = options.schema ?? STORE_DEFAULTS.schema
  if (typeof schema !== 'string' || schema === '' || Buffer.byteLength(schema) > 63)
    throw new PgcrewError('INVALID_OPTION', `openStore() schema takes a name of 1 to 63 bytes, not ${JSON.stringify(schema)}`)
  const copyThreshold = options.copyThreshold ?? STORE_DEFAULTS.copyThreshold
  if (!Number.isSafeInteger(copyThreshold) || copyThreshold < 1) throw new PgcrewError('INVALID_OPTION', `openStore() copyThreshold takes a whole number ≥ 1, not ${JSON.stringify(copyThreshold)}`)
  return { schema, create: options.create ?? STORE_DEFAULTS.create, copyThreshold }
}

// Not instanceof: a worker thread or a second copy of the package loads its own Database class, and
// a Database taken for options would quietly start a server of its own.
function isDatabase(value: unknown): value is Database {
  if (value instanceof Database) return true
  const v = value as Partial<Record<'query' | 'transaction' | 'withClient' | 'snapshot', unknown>> | undefined
  return typeof v === 'object' && v !== null && ['query', 'transaction', 'withClient', 'snapshot'].every((k) => typeof v[k as keyof typeof v] === 'function')
}

/**
 * Open the record store on `db` (its tables are created when missing), or, without a Database, on
 * the server the environment names, or on pgcrew's own PostgreSQL when nothing is configured (a
 * throwaway one; with `persist: dir`, one that keeps its data in `dir`).
 *
 * @example await using store = await openStore(db, { schema: 'app' })
 * @example await using store = await openStore({ persist: '.pgcrew/store' })
 */
export async function openStore(options?: StoreOptions): Promise<Store>
export async function openStore(db: Database, options?: StoreOptions): Promise<Store>
export async function openStore(dbOrOptions?: Database | StoreOptions, maybeOptions: StoreOptions = {}): Promise<Store> {
  const withDb = isDatabase(dbOrOptions)
  const options = withDb ? maybeOptions : (dbOrOptions ?? {})
  const resolved = resolveOptions(options, withDb)
  let store: Store
  if (withDb) {
    store = new Store(dbOrOptions, resolved.schema, resolved.copyThreshold)
  } else {
    const { db, cluster } = await openEmbeddedDatabase(options)
    store = new Store(db, resolved.schema, resolved.copyThreshold, { cluster })
  }
  try {
    if (resolved.create) await store.ensureTables()
  } catch (error) {
    await store.close().catch(() => {})
    throw error
  }
  return store
}

export type { Where }
