import pg from 'pg'
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
  pgpassFile?: string
  warn?: (message: string) => void
  env: NodeJS.ProcessEnv
  readOnly: boolean
  connectionTimeoutMillis: number
  hooks: readonly OnConnectHook[]
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

/** A pg.Client that runs the onConnect hooks and notices when it can no longer be shared safely. */
export class PgcrewClient extends pg.Client {
  /** Set when the session's role or authorization changed: such a client is never pooled again. */
  tainted = false
  readonly #hooks: readonly OnConnectHook[]
  readonly #params: ConnectionParams

  constructor(config: pg.ClientConfig, hooks: readonly OnConnectHook[], params: ConnectionParams) {
    super(config)
    this.#hooks = hooks
    this.#params = params
    // A kill can arrive in the same read as the end of the connect: pg-pool has then taken its idle
    // listener off and the lease has not yet put its own on, and an 'error' with no listener would
    // crash the process. The error also fails whatever query is in flight, so nothing is lost.
    this.on('error', () => {})
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
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text
    // SET ROLE to a non-superuser reports nothing to the client, so look at the statement itself.
    if (text && /^\s*(set\s+(session\s+)?(role|session\s+authorization)|reset\s+(role|session\s+authorization)|set\s+default_transaction_read_only)\b/i.test(text)) this.tainted = true
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
  const client = new PgcrewClient(clientConfig(spec), spec.hooks, spec.params)
  client.on('error', () => {})
  await client.connect()
  return client
}

/** Make sure a connection is destroyed, not pooled, when it is given back (it holds state we cannot undo). */
export function markUnreusable(client: pg.ClientBase): void {
  if (client instanceof PgcrewClient) client.tainted = true
}
