import pg from 'pg'
import { createHash } from 'node:crypto'
import { sslFor, startupOptions, type ConnectionParams } from './connection-params.ts'
import { lookupPgpass, pgpassFileName, pgpassIgnoredBecause } from './pgpass.ts'

/** Runs on every new physical connection, before it is used (set search_path, timeouts…). */
export type OnConnectHook = (client: pg.ClientBase, info: { params: ConnectionParams }) => void | Promise<void>

/** Where a connection's password came from, for libpq-style hints in errors (never the password). */
export type PasswordSource = { kind: 'option' } | { kind: 'PGPASSWORD' } | { kind: 'pgpass'; file: string; line: number } | { kind: 'none'; file: string; ignored?: string }

/** What a connection attempt needs besides its params. */
export interface ClientSpec {
  params: ConnectionParams
  /** Explicit password, used only when connecting as `passwordUser`. */
  password?: string
  passwordUser?: string
  /** Where `password` came from, for error hints (`profile "utah"`, `service "obs" in ~/.pg_service.conf`). */
  passwordOrigin?: string
  pgpassFile?: string
  warn?: (message: string) => void
  env: NodeJS.ProcessEnv
  readOnly: boolean
  connectionTimeoutMillis: number
  hooks: readonly OnConnectHook[]
  /** Run statements with parameters as named prepared statements (DatabaseOptions.prepareStatements). */
  prepareStatements?: boolean
}

/** The password for this role, looked up afresh each time libpq would: option > PGPASSWORD > pgpass. */
export function findPassword(spec: ClientSpec): { password?: string; source: PasswordSource } {
  const { params, env } = spec
  if (spec.password !== undefined && spec.passwordUser === params.user) return { password: spec.password, source: { kind: 'option' } }
  if (env.PGPASSWORD) return { password: env.PGPASSWORD, source: { kind: 'PGPASSWORD' } }
  const match = lookupPgpass({ host: params.host, port: params.port, database: params.dbname, user: params.user }, { file: spec.pgpassFile, env, warn: spec.warn })
  if (match) return { password: match.password, source: { kind: 'pgpass', file: match.file, line: match.line } }
  const file = spec.pgpassFile ?? pgpassFileName(env)
  return { source: { kind: 'none', file, ignored: pgpassIgnoredBecause(file) } }
}

/** Named statements kept per connection; past this, new texts run unnamed (the server keeps each plan). */
const MAX_NAMED_STATEMENTS = 256

/**
 * SQL that makes the server forget all of this session's prepared statements. (DEALLOCATE of one
 * name, if it is ours, shows up as 26000 on its next use, and is handled there.)
 */
const FORGETS_STATEMENTS = /^\s*(discard\s+all|deallocate\s+(prepare\s+)?all)\s*;?\s*$/i

/**
 * The server no longer has the statement (26000: dropped behind our back) or its cached plan no
 * longer fits (0A000 "cached plan must not change result type", after an ALTER TABLE).
 */
const STALE_STATEMENT = new Set(['26000', '0A000'])

/** Statements that change the session's role or read-only default: such a session is not the login's any more. */
const TAINTS = /^\s*(set\s+(session\s+)?(role|session\s+authorization)|reset\s+(role|session\s+authorization)|set\s+default_transaction_read_only)\b/i

/** How {@link PgcrewClient.statement} reports: pg's error as it is, or the result. */
export type StatementCallback = (error: Error | null, result?: pg.QueryResult) => void

type WireConnection = { parsedStatements: Record<string, string>; submittedNamedStatements: Record<string, string> }

/** A pg.Client that runs the onConnect hooks and notices when it can no longer be shared safely. */
export class PgcrewClient extends pg.Client {
  /** Set when the session's role or authorization changed: such a client is never pooled again. */
  tainted = false
  readonly #hooks: readonly OnConnectHook[]
  readonly #params: ConnectionParams
  readonly #prepare: boolean
  /** SQL text → the statement name it runs under on this connection. */
  readonly #names = new Map<string, string>()
  #generation = 0

  constructor(config: pg.ClientConfig, hooks: readonly OnConnectHook[], params: ConnectionParams, prepareStatements = false) {
    super(config)
    this.#hooks = hooks
    this.#params = params
    // A kill can arrive in the same read as the end of the connect: pg-pool has then taken its idle
    // listener off and the lease has not yet put its own on, and an 'error' with no listener would
    // crash the process. The error also fails whatever query is in flight, so nothing is lost.
    this.on('error', () => {})
    this.#prepare = prepareStatements
  }

  /** Whether parameterised statements run as named prepared statements on this connection. */
  get preparesStatements(): boolean {
    return this.#prepare
  }

  /** The server forgot this session's prepared statements: so do we, and pg (it would skip the Parse). */
  #forgetStatements(): void {
    this.#names.clear()
    this.#beginNames.clear()
    const connection = (this as unknown as { connection: WireConnection }).connection
    connection.parsedStatements = {}
    connection.submittedNamedStatements = {}
  }

  /**
   * A parameterised statement as a named prepared statement: parsed and planned once per connection,
   * then only bound and executed. A stale statement gets a fresh name; outside a transaction the
   * statement is sent again once (it did not run), inside one the error stands (the transaction failed).
   */
  #named(text: string, values: unknown[], callback: StatementCallback, retried: boolean): void {
    let name = this.#names.get(text)
    if (name === undefined) {
      if (this.#names.size + this.#beginNames.size >= MAX_NAMED_STATEMENTS) return void super.query(text, values, callback)
      name = statementName(text)
      this.#names.set(text, name)
    }
    const autocommit = this.getTransactionStatus() === 'I'
    // Built from the text, not from a config object: given one, pg's Query copies it with
    // getOwnPropertyDescriptors (~1.7 µs, on every statement).
    const query = new pg.Query(text, values) as pg.Query & { name?: string; callback?: StatementCallback }
    query.name = name
    query.callback = (error, result) => {
      if (!error || !STALE_STATEMENT.has((error as { code?: string }).code ?? '')) return callback(error, result)
      this.#names.set(text, `${statementName(text)}_${++this.#generation}`)
      if (!autocommit || retried) return callback(error)
      this.#named(text, values, callback, true)
    }
    super.query(query as never)
  }

  /**
   * One statement, its result to `callback`: what query(text, values) does, without the promises pg
   * and an async wrapper would add (db.query outside a transaction runs this, once per statement).
   */
  statement(text: string, values: unknown[] | undefined, callback: StatementCallback): void {
    // SET ROLE to a non-superuser reports nothing to the client, so look at the statement itself.
    if (TAINTS.test(text)) this.tainted = true
    if (this.#prepare && Array.isArray(values)) return this.#named(text, values, callback, false)
    if (FORGETS_STATEMENTS.test(text)) {
      // Queued behind it, a statement must be parsed again; finished before it, it is gone once it has run.
      this.#forgetStatements()
      return void super.query(text, values as unknown[], (error: Error | null, result: pg.QueryResult) => {
        this.#forgetStatements()
        callback(error, result)
      })
    }
    super.query(text, values as unknown[], callback)
  }

  /** Whether `text` may go out inside another submittable (BEGIN with it): not one that `statement` must watch. */
  joinsBegin(text: string): boolean {
    return !TAINTS.test(text) && !FORGETS_STATEMENTS.test(text)
  }

  /**
   * SQL text → the name it runs under as a transaction's first statement, sent with its BEGIN
   * (begin-with.ts). Names of their own: that submittable closes a statement it does not know to be
   * parsed before parsing it (a Parse that succeeded before its Execute failed is never recorded),
   * which #named's pg Query does not, so one name for both let a failed first statement leave a
   * statement behind that the next plain use of the text met as "already exists" (42P05).
   */
  readonly #beginNames = new Map<string, string>()

  /** The name `text` runs under as a first statement sent with BEGIN ('' for none: prepareStatements off, or the cap reached). */
  statementNameFor(text: string): string {
    if (!this.#prepare) return ''
    let name = this.#beginNames.get(text)
    if (name === undefined) {
      // One cap for both maps: at most MAX_NAMED_STATEMENTS prepared statements per connection.
      if (this.#names.size + this.#beginNames.size >= MAX_NAMED_STATEMENTS) return ''
      name = `${statementName(text)}_b`
      this.#beginNames.set(text, name)
    }
    return name
  }

  /** Such a first statement failed: a stale one (0A000, 26000) gets a fresh name, as in #named. */
  statementFailed(text: string, error: unknown): void {
    if (STALE_STATEMENT.has((error as { code?: string }).code ?? '') && this.#beginNames.has(text)) this.#beginNames.set(text, `${statementName(text)}_b${++this.#generation}`)
  }

  #beginsInFlight = 0

  /**
   * A BEGIN sent without waiting for it (a transaction opened lazily): until it is answered, pg's
   * status still says idle, yet everything queued behind it runs inside that transaction. So the
   * status reads 'T' meanwhile, for the checks that ask it (a transaction-scoped lock, migrate).
   */
  beginSent(answered: Promise<unknown>): void {
    this.#beginsInFlight++
    const done = (): void => {
      this.#beginsInFlight--
    }
    answered.then(done, done)
  }

  override getTransactionStatus(): ReturnType<pg.Client['getTransactionStatus']> {
    return this.#beginsInFlight > 0 ? 'T' : super.getTransactionStatus()
  }

  /**
   * One statement as a promise, for pgcrew's own callers: they map a failure in their own async
   * catch (which gives it their stack), so no second promise here to do it.
   */
  run(text: string, values: unknown[] | undefined): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => this.statement(text, values, (error, result) => (error ? reject(error) : resolve(result!))))
  }

  /** A driver error is made in a socket callback: give it the stack of the code awaiting it, as pg's own promise does. */
  async #withStack(result: Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    try {
      return await result
    } catch (error) {
      if (error instanceof Error) Error.captureStackTrace(error)
      throw error
    }
  }

  override connect(): Promise<pg.Client>
  override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void
  override connect(callback?: (err: any, c?: any) => void): Promise<pg.Client> | void {
    const ready = super.connect().then(async () => {
      // A role switch reports is_superuser/session_authorization: the session is no longer ours to share.
      ;(this as unknown as { connection: NodeJS.EventEmitter }).connection.on('parameterStatus', (msg: { parameterName: string }) => {
        if (msg.parameterName === 'is_superuser' || msg.parameterName === 'session_authorization' || msg.parameterName === 'default_transaction_read_only') this.tainted = true
      })
      for (const hook of this.#hooks) await hook(this, { params: this.#params })
      // What the onConnect hooks set (even SET ROLE) is this connection's baseline, not a taint.
      this.tainted = false
      return this
    })
    // A failed hook leaves an open session behind: end it on either path (pg-pool passes a callback,
    // connectClient awaits the promise).
    ready.catch(() => this.end().catch(() => {}))
    if (!callback) return ready
    ready.then(
      () => callback(null, this),
      (error: Error) => callback(error),
    )
  }

  override query(...args: unknown[]): never {
    // The common form, query(text[, values]), goes the statement's way.
    if (typeof args[0] === 'string' && args.length <= 2 && (args[1] === undefined || Array.isArray(args[1]))) return this.#withStack(this.run(args[0], args[1] as unknown[] | undefined)) as never
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text
    if (text && TAINTS.test(text)) this.tainted = true
    if (text && FORGETS_STATEMENTS.test(text)) {
      this.#forgetStatements()
      const result = (super.query as (...a: unknown[]) => unknown)(...args)
      if (result instanceof Promise) return result.finally(() => this.#forgetStatements()) as never
      return result as never
    }
    return (super.query as (...a: unknown[]) => never)(...args)
  }
}

/** pg client config for a spec: an async password function, startup options, ssl, timeouts. */
export function clientConfig(spec: ClientSpec): pg.ClientConfig {
  const { params } = spec
  const extra: Record<string, string> = {}
  if (spec.readOnly) extra.default_transaction_read_only = 'on'
  return {
    host: params.host,
    port: params.port,
    database: params.dbname,
    user: params.user,
    // pg asks only when the server wants a password; an empty string lets pg report "no password".
    password: async () => findPassword(spec).password ?? '',
    ssl: sslFor(params.sslmode),
    application_name: params.applicationName ?? 'pgcrew',
    options: startupOptions(params, extra),
    statement_timeout: params.statementTimeoutMillis,
    connectionTimeoutMillis: params.connectTimeoutSeconds !== undefined ? params.connectTimeoutSeconds * 1000 : spec.connectionTimeoutMillis,
    keepAlive: true,
  } as pg.ClientConfig
}

/** A fresh, connected client for a spec (hooks already run). */
export async function connectClient(spec: ClientSpec): Promise<PgcrewClient> {
  const client = new PgcrewClient(clientConfig(spec), spec.hooks, spec.params, spec.prepareStatements)
  client.on('error', () => {})
  await client.connect()
  return client
}

/** Make sure a connection is destroyed, not pooled, when it is given back (it holds state we cannot undo). */
export function markUnreusable(client: pg.ClientBase): void {
  if (client instanceof PgcrewClient) client.tainted = true
}

/** Names already worked out: a pipeline names its ledger claim on every task, and a sha256 costs ~2 µs. */
const statementNames = new Map<string, string>()

/** The statement name for a text: stable across connections and processes, so every connection shares it. */
export function statementName(text: string): string {
  let name = statementNames.get(text)
  if (name === undefined) {
    name = `pgcrew_${createHash('sha256').update(text).digest('hex').slice(0, 20)}`
    // Texts built with values inlined would grow this without end: start over past the per-connection cap.
    if (statementNames.size >= MAX_NAMED_STATEMENTS * 4) statementNames.clear()
    statementNames.set(text, name)
  }
  return name
}
