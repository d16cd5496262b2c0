import { AsyncLocalStorage } from 'node:async_hooks'
import type { Readable } from 'node:stream'
import { advisoryLock, withAdvisoryLock, type AdvisoryKey, type AdvisoryLock, type AdvisoryLockOptions } from '../toolkit/advisory-lock.ts'
import { copyFrom, copyTo, type CopyFormat, type CopyFromOptions, type TableName } from '../toolkit/copy.ts'
import { copyTransfer, type CopyTransferResult, type CopyTransferTarget } from '../toolkit/copy-transfer.ts'
import { cursor, type Cursor, type CursorOptions } from '../toolkit/cursor.ts'
import { listen, notify, type Listener, type ListenOptions, type Notification } from '../toolkit/listen.ts'
import { prepare, type PreparedStatement } from '../toolkit/prepared.ts'
import { settings, withSettings, type Settings, type SettingValue } from '../toolkit/settings.ts'
import { inspect } from 'node:util'
import type pg from 'pg'
import { backoffMillis } from './retry-backoff.ts'
import { connectError, describeTarget } from '../connect/connect-errors.ts'
import { PG_ENV_KEYS, resolveConnectionParams, type ConnectionParams, type ConnectionSettings } from '../connect/connection-params.ts'
import { parseConnectionString } from '../connect/connection-string.ts'
import { DatabaseError } from '../errors/database-error.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { callerError, createExecutor, isServerErrorOnly, type Executor, type Lease } from './database-executor.ts'
import { pgPoolFor, type PgPoolOptions } from './database-pg-pool.ts'
import { loadHookModule, type HookRef } from './on-connect-hooks.ts'
import { DBVERSION_PATTERN, describeValue, resolveOptions, type DatabaseOptions, type Pooling, type ResolvedOptions } from '../connect/connect-options.ts'
import { showValue } from '../errors/show-value.ts'
import type { ClientSpec, OnConnectHook } from '../connect/connect-client.ts'
import { chooseProfile, loadProfiles, type Profile, type ProfileSet } from '../connect/profiles.ts'
import { trackInRealm, untrackInRealm } from './database-realm.ts'
import { clientSpecFor, type RoleChoice, type Target } from '../connect/connect-target.ts'
import type { Crew, CrewOptions } from '../crew/crew.ts'
import type { Store, StoreOptions } from '../store/store.ts'
import { makeSnapshot, restoreSnapshotOptions, snapshotEnv, type DatabaseSnapshot } from './database-snapshot.ts'
import { beginStatement, Transaction, type TransactionOptions, type TransactionScope } from './transaction.ts'
import type { WithClientOptions } from '../toolkit/toolkit-target.ts'
import type { FirstResult } from './begin-with.ts'
import { activeScope, runScope, type Scope } from './scope.ts'
import { runLane, type LaneHost, type LaneItem } from './transaction-lane.ts'

/**
 * Internal (not in the public barrel): a transaction whose BEGIN and first statement go out in one
 * round trip. The crew's pipeline path opens each task's transaction with its ledger claim this way.
 */
export const TRANSACTION_FROM: unique symbol = Symbol('pgcrew.transactionFrom')
/** Internal: transactions one after another on one connection, each COMMIT sent with the next BEGIN (transaction-lane.ts). */
export const TRANSACTION_LANE: unique symbol = Symbol('pgcrew.transactionLane')

/** Options of `connect()`: one-off overrides of where to connect. */
export interface ConnectOptions {
  /** Return false instead of throwing when the connection fails. */
  silentOnFail?: boolean
  dbname?: string
  user?: string
  host?: string
  port?: number
}

/**
 * The master connection object: where and as whom to connect, and the connections themselves.
 *
 * @example
 * await using db = new Database({ profile: 'utah' })
 * await db.connect()
 * const { rows } = await db.query('select current_user')
 */
export class Database implements AsyncDisposable {
  readonly #opts: ResolvedOptions
  #password: string | undefined
  #profiles: ProfileSet | undefined
  #target: Target | undefined
  #executor: Executor | undefined
  #version: string | undefined
  #closed = false
  readonly #hooks: HookRef[] = []
  readonly #context = new AsyncLocalStorage<Transaction>()
  readonly #scopes = new AsyncLocalStorage<Scope>()
  #idleErrors = 0
  readonly #listeners = new Set<Listener<Notification>>()
  readonly #retiring = new Set<Promise<void>>()
  #switchQueue: Promise<void> = Promise.resolve()
  #firstConnect: Promise<boolean> | undefined

  constructor(options: DatabaseOptions = {}) {
    this.#opts = resolveOptions(options)
    trackInRealm(this)
    this.#password = (this.#opts as { password?: string }).password
    const hooks = this.#opts.onConnect
    for (const hook of hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]) this.onConnect(hook)
  }

  /** Rebuild a Database in another thread or process from `snapshot()`. */
  static fromSnapshot(snapshot: DatabaseSnapshot, extra: Partial<DatabaseOptions> = {}): Database {
    const { options, password, role, dbversion, settings, serverSettings } = restoreSnapshotOptions(snapshot)
    const db = new Database({ ...options, ...extra, env: { ...options.env, ...extra.env } })
    if (password !== undefined) db.#password = password
    db.#pendingRole = role
    db.#pendingVersion = dbversion
    db.#pendingSettings = settings && { settings, serverSettings }
    return db
  }

  #pendingRole: RoleChoice | undefined
  #pendingVersion: string | undefined
  #pendingSettings: { settings: ConnectionSettings; serverSettings: Record<string, string> } | undefined

  // ---- state --------------------------------------------------------------------------------

  /** True once a connection has been made and until `close()`. */
  get connected(): boolean {
    return this.#executor !== undefined
  }

  /** The profile in use, if any. */
  get profile(): string | undefined {
    return this.#target?.profile?.name
  }

  /** The database connected to (`<base>_<dbversion>` after `changeVersion`). */
  get dbname(): string | undefined {
    return this.#executor?.spec.params.dbname
  }

  /** The version suffix chosen with `changeVersion`. */
  get dbversion(): string | undefined {
    return this.#target?.dbversion
  }

  /** The role connections log in as. */
  get user(): string | undefined {
    return this.#executor?.spec.params.user
  }

  /** The role choice (default, admin, user, or a named role). */
  get role(): RoleChoice | undefined {
    return this.#target?.role
  }

  /** Whether sessions are read-only on the server (`default_transaction_read_only`). */
  get readOnly(): boolean | undefined {
    return this.#executor?.spec.readOnly
  }

  get pooling(): Pooling {
    return this.#target?.pooling ?? this.#opts.pooling
  }

  /** Where connections go — never a password. */
  get connectionParams(): ConnectionParams | undefined {
    return this.#executor?.spec.params
  }

  /** The server's version string (`SHOW server_version`), known after connect. */
  get serverVersion(): string | undefined {
    return this.#version
  }

  /** Connections this Database holds open right now. */
  get connectionCount(): number {
    return this.#executor?.totalCount ?? 0
  }

  /** The most connections this Database's own pool may open (counted in a crew's budget). */
  get maxConnections(): number {
    return this.#opts.max
  }

  /**
   * A separate `pg.Pool` on this Database's current server and role (same password lookup and
   * onConnect hooks), for a library that wants a pool of its own, such as a job engine. Its
   * connections are not this Database's: count them in a budget yourself, and `end()` it.
   *
   * @example const pool = await db.pgPool({ max: 3, applicationName: 'my engine' })
   */
  async pgPool(options: PgPoolOptions): Promise<pg.Pool> {
    return pgPoolFor((await this.#executorNow()).spec, options)
  }

  /** Start a crew of worker threads that reconnect from this Database's snapshot. */
  async crew(options: CrewOptions): Promise<Crew> {
    // Loaded on first use: the crew builds on Database, so Database does not import it up front
    // (and a process that never starts a crew never loads piscina).
    const { Crew } = await import('../crew/crew.ts')
    return Crew.create(this, options)
  }

  /** Open the record store on this Database (`openStore(db, options)`); its tables are created when missing. */
  async store(options: StoreOptions = {}): Promise<Store> {
    // Loaded on first use, like the crew: the store builds on Database.
    const { openStore } = await import('../store/store.ts')
    return openStore(this, options)
  }

  /** How many idle connections the server killed under us (each cost one reconnect, nothing else). */
  get idleErrorCount(): number {
    return this.#idleErrors
  }

  // ---- profiles -----------------------------------------------------------------------------

  #profileSet(): ProfileSet {
    this.#profiles ??= loadProfiles({ files: this.#opts.profilesFile ? [this.#opts.profilesFile] : undefined, env: this.#opts.env })
    return this.#profiles
  }

  /** The profiles this Database can use, in choice order. */
  listProfiles(): Profile[] {
    return [...this.#profileSet().profiles]
  }

  /** Decide the profile for a fresh connect: named, by hostname, `local`, or none when settings are explicit. */
  #initialProfile(): Profile | undefined {
    const env = this.#opts.env
    // Rebuilt from a snapshot: use exactly the master's profile (or none), never choose anew.
    if (this.#pendingSettings) return this.#opts.profile ? chooseProfile(this.#profileSet(), this.#opts.profile, env).profile : undefined
    // chooseProfile reads PGCREW_PROFILE itself, so its errors can say where the name came from.
    if (this.#opts.profile ?? env.PGCREW_PROFILE) return chooseProfile(this.#profileSet(), this.#opts.profile, env).profile
    if (this.#opts.connectionString || this.#opts.host) return undefined
    const set = this.#profileSet()
    if (set.profiles.length === 0) return undefined
    try {
      return chooseProfile(set, undefined, env).profile
    } catch (error) {
      // With PG* variables set, libpq users expect those to work when no profile claims this host.
      if (error instanceof PgcrewError && error.code === 'NO_PROFILE_MATCHES' && PG_ENV_KEYS.some((k) => env[k])) return undefined
      throw error
    }
  }

  #baseSettings(): { settings: ConnectionSettings; serverSettings: Record<string, string> } {
    if (this.#pendingSettings) {
      const settings = { ...this.#pendingSettings.settings }
      if (this.#opts.applicationName) settings.applicationName = this.#opts.applicationName
      return { settings, serverSettings: this.#pendingSettings.serverSettings }
    }
    const o = this.#opts
    let settings: ConnectionSettings = {}
    let serverSettings: Record<string, string> = {}
    if (o.connectionString) {
      const parsed = parseConnectionString(o.connectionString)
      settings = parsed.settings
      serverSettings = parsed.serverSettings
      if (parsed.password !== undefined && this.#password === undefined) this.#password = parsed.password
    }
    const explicit: ConnectionSettings = {
      host: o.host,
      port: o.port,
      dbname: o.dbname,
      user: o.user,
      sslmode: o.sslmode,
      applicationName: o.applicationName,
      options: o.options,
      searchPath: o.searchPath,
      statementTimeoutMillis: o.statementTimeoutMillis,
    }
    for (const [k, v] of Object.entries(explicit)) if (v !== undefined) (settings as Record<string, unknown>)[k] = v
    return { settings, serverSettings }
  }

  // ---- connecting ---------------------------------------------------------------------------

  #spec(target: Target): ClientSpec {
    return clientSpecFor(target, { options: this.#opts, password: target.password, hooks: this.#hooks.map((ref) => ref.hook) })
  }

  /** Build an executor for a target and prove it works; the caller swaps it in. */
  async #open(target: Target): Promise<{ executor: Executor; version: string }> {
    const spec = this.#spec(target)
    const executor = createExecutor(target.pooling, spec, {
      max: this.#opts.max,
      idleTimeoutMillis: this.#opts.idleTimeoutMillis,
      connectionTimeoutMillis: this.#opts.connectionTimeoutMillis,
      maxLifetimeSeconds: this.#opts.maxLifetimeSeconds,
      prePing: this.#opts.prePing,
      onIdleError: () => {
        this.#idleErrors++
      },
    })
    let lease: Lease | undefined
    try {
      lease = await executor.acquire()
      const { rows } = await lease.client.query<{ server_version: string }>('SHOW server_version')
      await lease.release()
      return { executor, version: rows[0]!.server_version }
    } catch (error) {
      await lease?.release(true)
      await executor.end(0).catch(() => {})
      throw connectError(error, spec, target.profile?.name)
    }
  }

  /** Swap in a new target only after it has connected: on failure the old connection stays usable. */
  async #switchTo(build: (current: Target | undefined) => Target): Promise<void> {
    // One switch at a time: each builds on the target the previous one left (no lost updates).
    const run = this.#switchQueue.then(async () => {
      this.#assertOpen()
      const target = build(this.#target)
      const { executor, version } = await this.#open(target)
      if (this.#closed) {
        // close() ran while we were connecting: do not leave a live pool behind it.
        await executor.end(0)
        this.#assertOpen()
      }
      const old = this.#executor
      this.#executor = executor
      this.#target = target
      this.#password = target.password
      this.#version = version
      // Work in flight on the old connections may finish; new work already goes to the new ones.
      if (old) void this.#retire(old)
    })
    this.#switchQueue = run.catch(() => {})
    await run
  }

  /** End an executor in the background, giving its leases closeTimeoutMillis; close() waits for it. */
  #retire(executor: Executor): Promise<void> {
    const done: Promise<void> = executor
      .end(this.#opts.closeTimeoutMillis)
      .then((forced) => {
        if (forced) this.#warn(`destroyed ${forced} connection(s) still in use ${this.#opts.closeTimeoutMillis} ms after close (a lock, cursor or client never released?)`)
      })
      .catch(() => {})
      .finally(() => this.#retiring.delete(done))
    this.#retiring.add(done)
    return done
  }

  #warn(message: string): void {
    if (this.#opts.onWarning) this.#opts.onWarning(message)
    else process.stderr.write(`pgcrew: ${message}\n`)
  }

  #assertOpen(): void {
    if (this.#closed) throw new PgcrewError('CLOSED', 'this Database was closed; create a new one')
  }

  /**
   * Connect using the options, the profile and the environment. Returns true on success; with
   * `silentOnFail` a failure returns false instead of throwing.
   */
  async connect(options: ConnectOptions = {}): Promise<boolean> {
    try {
      await this.#switchTo((current) => {
        const target = this.#orInitial(current)
        const settings = { ...target.settings }
        for (const key of ['dbname', 'user', 'host', 'port'] as const) {
          if (options[key] !== undefined) (settings as Record<string, unknown>)[key] = options[key]
        }
        return { ...target, settings }
      })
      return true
    } catch (error) {
      if (options.silentOnFail) return false
      throw error
    }
  }

  /** The target a switch builds on: the current one, or where a first connect would go. */
  #orInitial(current: Target | undefined): Target {
    return current ?? this.#initialTarget()
  }

  /** Where a first connection goes: options, profile, and any state restored from a snapshot. */
  #initialTarget(): Target {
    const { settings, serverSettings } = this.#baseSettings()
    const profile = this.#initialProfile()
    const role = this.#pendingRole ?? { kind: 'default' as const }
    const dbversion = this.#pendingVersion ?? this.#opts.dbversion
    // A profile's pooling applies unless the caller chose per-transaction explicitly.
    const pooling = this.#opts.pooling === 'pooled' && profile?.pooling ? profile.pooling : this.#opts.pooling
    return { profile, settings, serverSettings, role, dbversion, pooling, password: this.#password }
  }

  /** Connect to a `postgres://` / `pq://` string or explicit settings, replacing profile settings. */
  async connectFromParameters(params: string | (ConnectionSettings & { password?: string })): Promise<boolean> {
    let settings: ConnectionSettings
    let serverSettings: Record<string, string> = {}
    let password: string | undefined
    if (typeof params === 'string') {
      const parsed = parseConnectionString(params)
      settings = parsed.settings
      serverSettings = parsed.serverSettings
      password = parsed.password
    } else {
      ;({ password, ...settings } = params)
    }
    // The password is the target's: it replaces the old one only once the new connection works.
    await this.#switchTo((t) => ({
      profile: undefined,
      settings,
      serverSettings,
      role: { kind: 'default' },
      dbversion: t?.dbversion ?? this.#opts.dbversion,
      pooling: t?.pooling ?? this.#opts.pooling,
      password,
    }))
    return true
  }

  /** Switch to another profile (default: the one this host would get). Keeps the old pool until the new one works. */
  async setProfile(name?: string): Promise<void> {
    const chosen = chooseProfile(this.#profileSet(), name, this.#opts.env).profile
    const { settings, serverSettings } = this.#baseSettings()
    await this.#switchTo((t) => ({
      profile: chosen,
      settings,
      serverSettings,
      role: { kind: 'default' },
      dbversion: t?.dbversion ?? this.#opts.dbversion,
      pooling: t?.pooling ?? this.#opts.pooling,
      password: t?.password ?? this.#password,
    }))
  }

  /** Reconnect as `user`, looking its password up afresh. */
  async become(user: string): Promise<void> {
    if (!user) throw new PgcrewError('INVALID_OPTION', 'become(user) needs a role name')
    await this.#switchTo((t) => ({ ...this.#orInitial(t), role: { kind: 'role', name: user } }))
  }

  /** Reconnect as the profile's (or the given) admin role. */
  async becomeAdmin(admin?: string): Promise<void> {
    await this.#switchTo((current) => {
      const t = this.#orInitial(current)
      const name = admin ?? this.#opts.admin ?? t.profile?.admin
      if (!name) {
        throw new PgcrewError(
          'ADMIN_NOT_CONFIGURED',
          `no admin role configured${t.profile ? ` for profile "${t.profile.name}"` : ''}; add "admin = ROLE" to the profile, or name the role: becomeAdmin('ROLE')`,
        )
      }
      return { ...t, role: { kind: 'admin', name } }
    })
  }

  /** Reconnect as the profile's (or the given) user role; its sessions are read-only unless `readonly = false`. */
  async becomeUser(user?: string): Promise<void> {
    await this.#switchTo((current) => {
      const t = this.#orInitial(current)
      const name = user ?? t.profile?.user ?? this.#opts.user ?? resolveConnectionParams(t.settings, t.profile, this.#opts.env).user
      return { ...t, role: { kind: 'user', name } }
    })
  }

  /** Connect to `<base dbname>_<v>`; without `v`, back to the base database. */
  async changeVersion(v?: string): Promise<void> {
    if (v !== undefined && !DBVERSION_PATTERN.test(v)) throw new PgcrewError('INVALID_OPTION', `dbversion ${showValue(v)} may hold only letters, digits, _ . and -`)
    await this.#switchTo((t) => ({ ...this.#orInitial(t), dbversion: v }))
  }

  /** Switch between a pool and a fresh connection per unit of work. */
  async setPooling(pooling: Pooling): Promise<void> {
    await this.#switchTo((t) => ({ ...this.#orInitial(t), pooling }))
  }

  /**
   * Run a hook on every new physical connection: a function, or a module path whose default export
   * is the hook (only module hooks travel to crew workers). Applies to connections made from now on.
   */
  onConnect(hook: OnConnectHook | string): this {
    if (typeof hook !== 'function' && !(typeof hook === 'string' && hook !== '')) {
      throw new PgcrewError('INVALID_OPTION', `onConnect takes a function or a module path, not ${describeValue(hook)}`)
    }
    this.#hooks.push(typeof hook === 'string' ? { module: hook, hook: loadHookModule(hook) } : { hook })
    return this
  }

  // ---- work ---------------------------------------------------------------------------------

  /** Lets a transaction see which of its savepoints the calling code runs inside. */
  readonly #scope: TransactionScope = {
    run: (tx, fn) => this.#context.run(tx, fn),
    current: () => this.#context.getStore(),
  }

  /**
   * The transaction the caller runs inside, if it is still open. A timer or stray promise started
   * inside a transaction keeps the async context after the transaction ended: its queries must not
   * land in whatever session the connection serves next.
   */
  #activeTransaction(): Transaction | undefined {
    let tx = this.#context.getStore()
    // Work of a savepoint that rolled back (or whose transaction did) must not go on in the
    // enclosing transaction or on its own: it was meant to be undone.
    if (tx && !tx.active && tx.undone) {
      throw new PgcrewError('TRANSACTION_FINISHED', 'this code runs inside a savepoint that has rolled back, so its statements must not run outside it; await all work inside the transaction function')
    }
    while (tx && !tx.active) tx = tx.parent
    return tx
  }

  async #executorNow(): Promise<Executor> {
    this.#assertOpen()
    // Many first queries at once must share one connect, not race to build a pool each.
    if (!this.#executor) await (this.#firstConnect ??= this.connect().finally(() => (this.#firstConnect = undefined)))
    return this.#executor!
  }

  /**
   * A connection from the current executor. Work still waiting on a pool that a switch (become*,
   * changeVersion, setPooling…) retired moves on to the new pool; only close() fails it with CLOSED.
   */
  #lease(forTransaction = false): Promise<Lease> {
    // Inside db.scope(fn): the scope's own connection.
    const scope = this.#scopes.getStore()
    if (scope?.open) return scope.lease(forTransaction)
    // Once connected, no async layer of its own: this runs for every transaction.
    const executor = this.#executor
    if (executor && !this.#closed) return executor.acquire().catch((error: unknown) => this.#leaseAfter(executor, error))
    return this.#leaseAfter(undefined, undefined)
  }

  /** Connect first, or move on to the new executor when a switch retired `failed` while we waited on it. */
  async #leaseAfter(failed: Executor | undefined, error: unknown): Promise<Lease> {
    for (;;) {
      if (failed) {
        const retired = error instanceof PgcrewError && error.code === 'CLOSED' && !this.#closed && this.#executor !== undefined && this.#executor !== failed
        if (!retired) throw error
      }
      const executor = await this.#executorNow()
      try {
        return await executor.acquire()
      } catch (next) {
        failed = executor
        error = next
      }
    }
  }

  /**
   * Run `fn` with one connection pinned for all its work, without a transaction: every `query`,
   * `transaction` and toolkit call in its async context uses it, so session state (SET, temp tables,
   * session advisory locks) is seen throughout. Nested scopes and a scope inside a transaction reuse
   * the connection they run on; transactions in a scope run one at a time. At the end the session is
   * reset (DISCARD ALL, then the onConnect hooks) before the connection goes back to the pool, or
   * destroyed when it cannot be (work still running on it, a transaction left open, a broken socket).
   * Per-transaction mode gives the scope a connection of its own.
   *
   * @example await db.scope(async () => { await db.query('CREATE TEMP TABLE t (x int)'); await db.copyFrom('t', rows); await db.query('…') })
   */
  async scope<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#activeTransaction() || activeScope(this.#scopes)) return fn()
    return runScope(
      this.#scopes,
      async () => {
        const lease = await this.#lease()
        return { lease, spec: this.#executor!.spec, pooling: this.#executor!.pooling }
      },
      fn,
    )
  }

  /** Borrow one physical connection for `fn` (session state: advisory locks, LISTEN, COPY…). */
  async withClient<T>(fn: (client: pg.ClientBase) => Promise<T>, options: WithClientOptions = {}): Promise<T> {
    const current = this.#activeTransaction()
    if (current) {
      current.noteUse()
      if (!options.pin) return fn(current.client)
      const unpin = current.pin()
      let broken = false
      try {
        return await fn(current.client)
      } catch (error) {
        broken = !isServerErrorOnly(error)
        throw error
      } finally {
        await unpin(broken)
      }
    }
    return this.#onLease(fn)
  }

  /** Run `fn` on a connection of its own (no transaction), given back afterwards. */
  async #onLease<T>(fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
    const lease = await this.#lease()
    let broken = false
    try {
      return await fn(lease.client)
    } catch (error) {
      broken = !isServerErrorOnly(error)
      throw callerError(error)
    } finally {
      await lease.release(broken)
    }
  }

  /**
   * Run one statement. Inside `db.transaction(fn)` it joins that transaction's connection.
   *
   * @example const { rows } = await db.query('select * from t where id = $1', [id])
   */
  query<R extends pg.QueryResultRow = any>(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
    let current: Transaction | undefined
    try {
      current = this.#activeTransaction()
    } catch (error) {
      return Promise.reject(error)
    }
    if (current) return current.query<R>(text, values)
    const executor = this.#executor
    // The common case, a statement on its own: one connection from the pool for it, and no layers.
    if (executor && !this.#closed && typeof text === 'string' && !this.#scopes.getStore()?.open) return this.#statement<R>(executor, text, values)
    return this.#onLease((client) => client.query<R>(text as string, values))
  }

  async #statement<R extends pg.QueryResultRow>(executor: Executor, text: string, values: unknown[] | undefined): Promise<pg.QueryResult<R>> {
    try {
      return (await executor.statement(text, values)) as pg.QueryResult<R>
    } catch (error) {
      // A switch (become*, changeVersion, setPooling…) retired this pool while the statement waited: on to the new one.
      const retired = error instanceof PgcrewError && error.code === 'CLOSED' && !this.#closed && this.#executor !== undefined && this.#executor !== executor
      if (retired) return this.#onLease((client) => client.query<R>(text, values))
      throw callerError(error)
    }
  }

  /**
   * Run `fn` in a transaction on one connection: COMMIT on success, ROLLBACK on error. Called inside
   * another transaction of this Database it becomes a SAVEPOINT.
   *
   * @example await db.transaction(async (tx) => tx.query('update …'), { isolation: 'serializable', retries: 3 })
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    // Not async: without retries (the common case) the transaction is #once's promise itself, one
    // async layer and its await fewer per transaction. A throw here is still a rejection.
    try {
      const current = this.#activeTransaction()
      if (current) return current.transaction(fn, options)
      const begin = beginStatement(options)
      const retries = options.retries ?? 0
      return retries === 0 ? this.#once(begin, fn) : this.#retrying(begin, fn, options, retries)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** A transaction retried after a serialization failure or deadlock, `retries` times at most. */
  async #retrying<T>(begin: string, fn: (tx: Transaction) => Promise<T>, options: TransactionOptions, retries: number): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#once(begin, fn)
      } catch (error) {
        if (attempt >= retries || !(error instanceof DatabaseError && ['40001', '40P01'].includes(error.code))) throw error
        await new Promise((r) => setTimeout(r, backoffMillis(options.retryDelayMillis ?? 20, attempt + 1)))
      }
    }
  }

  /** A transaction opened by BEGIN and `first` in one round trip; `fn` sees what `first` reported. */
  async [TRANSACTION_FROM]<T>(first: { text: string; values: unknown[] }, fn: (tx: Transaction, first: FirstResult) => Promise<T>): Promise<T> {
    if (this.#activeTransaction()) throw new PgcrewError('INVALID_OPTION', 'a transaction opened with its first statement cannot nest inside another')
    return this.#once('BEGIN', fn as (tx: Transaction, first?: FirstResult) => Promise<T>, first)
  }

  /** Run the items `next` hands out as a lane of transactions (see transaction-lane.ts); each item is settled, this never throws. */
  [TRANSACTION_LANE]<T>(next: () => LaneItem<T> | undefined): Promise<void> {
    if (this.#activeTransaction()) throw new PgcrewError('INVALID_OPTION', 'a lane of transactions cannot run inside another transaction')
    return runLane(this.#laneHost, next)
  }

  /** What a lane of transactions needs of this Database (transaction-lane.ts). */
  readonly #laneHost: LaneHost = {
    lease: () => this.#lease(true),
    reusable: () => this.#executor?.pooling === 'pooled' && !activeScope(this.#scopes),
    open: (client, begin) => new Transaction(client, 0, undefined, this.#scope, begin),
    run: (tx, fn) => this.#context.run(tx, fn),
  }

  async #once<T>(begin: string, fn: (tx: Transaction, first?: FirstResult) => Promise<T>, first?: { text: string; values: unknown[] }): Promise<T> {
    // A lane of one: the same opening, COMMIT, rollback and give-back rules as the pipeline's lanes.
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined
    let given = false
    await runLane(this.#laneHost, () => {
      if (given) return undefined
      given = true
      return { begin, first, run: (tx, opened) => fn(tx, first ? opened : undefined), settle: (o) => (outcome = o) }
    })
    if (!outcome!.ok) throw outcome!.error
    return outcome!.value
  }

  // ---- the PostgreSQL toolkit (each delegates to its own module) -----------------------------

  /** SHOW/SET/RESET; `set` needs one connection (a transaction or `withSettings`), not a pool. */
  get settings(): Settings {
    return settings(this)
  }

  /** Run `fn` on one connection with these settings, restored afterwards even on a throw. */
  withSettings<T>(values: Readonly<Record<string, SettingValue>>, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
    return withSettings(this, values, fn)
  }

  /** A prepared statement with column and parameter types; planned once per physical connection. */
  prepare<R extends pg.QueryResultRow = any>(text: string): Promise<PreparedStatement<R>> {
    return prepare<R>(this, text)
  }

  /** Read a big result in batches with flat memory: `for await (const row of db.cursor(sql))`. */
  cursor<R extends pg.QueryResultRow = any>(text: string, values: readonly unknown[] = [], options: CursorOptions = {}): Cursor<R> {
    return cursor<R>(this, text, values, options)
  }

  /** LISTEN on a dedicated connection that reconnects and re-LISTENs; an async iterator of notifications. */
  async listen(channels: string | readonly string[], options: ListenOptions = {}): Promise<Listener<Notification>> {
    const listener = await listen(this, channels, options)
    // A listener holds a connection until closed; close() closes forgotten ones instead of waiting forever.
    this.#listeners.add(listener)
    const close = listener.close.bind(listener)
    listener.close = async (options) => {
      this.#listeners.delete(listener)
      await close(options)
    }
    return listener
  }

  /** NOTIFY, quoting the channel exactly as `listen` does (mixed-case names work). */
  notify(channel: string, payload = ''): Promise<void> {
    return notify(this, channel, payload)
  }

  /** A reentrant advisory lock on one connection; released on the server when its count reaches 0. */
  advisoryLock(keys: AdvisoryKey | readonly AdvisoryKey[], options: AdvisoryLockOptions = {}): Promise<AdvisoryLock | null> {
    return advisoryLock(this, keys, options)
  }

  /** Run `fn` holding an advisory lock. */
  withAdvisoryLock<T>(keys: AdvisoryKey | readonly AdvisoryKey[], fn: () => Promise<T>, options: AdvisoryLockOptions = {}): Promise<T> {
    return withAdvisoryLock(this, keys, fn, options)
  }

  /** COPY rows (arrays) or a stream into a table. */
  copyFrom(table: TableName, source: Parameters<typeof copyFrom>[2], options: CopyFromOptions = {}): Promise<{ rows: number }> {
    return copyFrom(this, table, source, options)
  }

  /** COPY a query's result out as a stream. */
  copyTo(query: string, options: { format?: CopyFormat } = {}): Readable {
    return copyTo(this, query, options)
  }

  /** Stream this query's COPY output into tables of one or more targets; a failing target does not stop the others. */
  copyTransfer(query: string, targets: readonly CopyTransferTarget[], options: { format?: 'text' | 'binary' } = {}): Promise<CopyTransferResult[]> {
    return copyTransfer(this, query, targets, options)
  }

  // ---- crossing threads ---------------------------------------------------------------------

  /** A plain, structured-cloneable description for reconnecting elsewhere (crew workers). */
  snapshot(): DatabaseSnapshot {
    const t = this.#target
    const o = this.#opts
    const { env, onConnect: _hooks, onWarning: _warn, connectionString: _uri, ...options } = o
    const base = t ?? this.#baseSettings()
    return makeSnapshot({
      version: 1,
      // Once connected, the profile in use (or none, after connectFromParameters) is what counts.
      options: { ...options, profile: t ? t.profile?.name : o.profile, pooling: this.pooling },
      settings: base.settings,
      serverSettings: base.serverSettings,
      role: t?.role ?? { kind: 'default' },
      dbversion: t?.dbversion ?? o.dbversion,
      hookModules: this.#hooks.flatMap((h) => (h.module ? [h.module] : [])),
      functionHooks: this.#hooks.filter((h) => !h.module).length,
      env: snapshotEnv(env),
      secrets: { password: this.#password, PGPASSWORD: env.PGPASSWORD || undefined },
    })
  }

  // ---- closing ------------------------------------------------------------------------------

  /** Close every connection. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true
    untrackInRealm(this)
    // The connections are going away: no UNLISTEN round trip that a stuck backend could hold up.
    await Promise.allSettled([...this.#listeners].map((l) => l.close({ discard: true })))
    // A switch or first connect under way ends its new pool itself once it sees #closed.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#switchQueue, new Promise((r) => (timer = setTimeout(r, this.#opts.closeTimeoutMillis)))])
    clearTimeout(timer)
    const executor = this.#executor
    this.#executor = undefined
    if (executor) void this.#retire(executor)
    await Promise.all([...this.#retiring])
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  toString(): string {
    const where = this.#executor ? describeTarget(this.#executor.spec.params) : 'not connected'
    return `Database(${this.profile ? `profile ${this.profile}, ` : ''}${where}${this.#executor?.spec.readOnly ? ', read-only' : ''})`
  }

  toJSON(): Record<string, unknown> {
    return { profile: this.profile, user: this.user, dbname: this.dbname, dbversion: this.dbversion, connected: this.connected, pooling: this.pooling }
  }

  [inspect.custom](): string {
    return `Database ${inspect(this.toJSON())}`
  }
}
