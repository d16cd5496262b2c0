import { closest } from './closest.ts'
import { PgcrewError } from './errors.ts'
import type { OnConnectHook } from './pg-client.ts'

/** How a Database gets physical connections. */
export type Pooling = 'pooled' | 'per-transaction'

/**
 * Everything `new Database(options)` accepts; every field is optional. Connection settings follow
 * libpq precedence: these options > the profile > PG* environment > libpq defaults.
 */
export interface DatabaseOptions {
  /** Profile name; default `PGCREW_PROFILE`, else chosen by this host's FQDN (see README). */
  profile?: string
  /** A profile file that replaces the default ones (like `PGCREW_PROFILES`). */
  profilesFile?: string
  /** `postgres://…` URI or py-postgresql `pq://…` IRI. */
  connectionString?: string
  host?: string
  port?: number
  dbname?: string
  user?: string
  /** A password for `user` only; other roles look theirs up afresh. */
  password?: string
  /** The role `becomeAdmin()` switches to (overrides the profile's `admin`). */
  admin?: string
  /** Force sessions read-only (true) or writable (false); default: read-only as the profile's user. */
  readonly?: boolean
  /** Connect to `<dbname>_<dbversion>`. */
  dbversion?: string
  pooling?: Pooling
  /** Pool size in pooled mode. */
  max?: number
  idleTimeoutMillis?: number
  connectionTimeoutMillis?: number
  /** Recycle pooled connections after this long (0 = never). */
  maxLifetimeSeconds?: number
  /** Validate a pooled connection with a round trip before handing it out. */
  prePing?: boolean
  /** How long close() and switches let work in flight finish before destroying what is still lent out. */
  closeTimeoutMillis?: number
  applicationName?: string
  sslmode?: string
  options?: string
  searchPath?: string
  statementTimeoutMillis?: number
  /** Hooks run on every new physical connection: functions, or module paths (these reach workers). */
  onConnect?: OnConnectHook | string | Array<OnConnectHook | string>
  /** The pgpass file (default `PGPASSFILE` or ~/.pgpass). */
  pgpassFile?: string
  /** Where warnings go (an ignored pgpass file…). Default: a line on stderr. */
  onWarning?: (message: string) => void
  /** The environment to read PG* and PGCREW_* from (default process.env). */
  env?: NodeJS.ProcessEnv
}

/** The one defaults table; README "Options" points here. */
export const DEFAULTS: Readonly<{ pooling: Pooling; max: number; idleTimeoutMillis: number; connectionTimeoutMillis: number; maxLifetimeSeconds: number; prePing: boolean; closeTimeoutMillis: number }> = Object.freeze({
  pooling: 'pooled' as Pooling,
  max: 10,
  idleTimeoutMillis: 10_000,
  connectionTimeoutMillis: 30_000,
  maxLifetimeSeconds: 0,
  prePing: false,
  closeTimeoutMillis: 10_000,
})

const KNOWN = new Set<string>([
  'profile', 'profilesFile', 'connectionString', 'host', 'port', 'dbname', 'user', 'password', 'admin', 'readonly',
  'dbversion', 'pooling', 'max', 'idleTimeoutMillis', 'connectionTimeoutMillis', 'maxLifetimeSeconds', 'prePing', 'closeTimeoutMillis',
  'applicationName', 'sslmode', 'options', 'searchPath', 'statementTimeoutMillis', 'onConnect', 'pgpassFile', 'onWarning', 'env',
])

/** Options after validation, with defaults filled in from {@link DEFAULTS}. */
export type ResolvedOptions = Readonly<Omit<DatabaseOptions, keyof typeof DEFAULTS> & typeof DEFAULTS & { env: NodeJS.ProcessEnv }>

function nearest(key: string): string | undefined {
  return [...KNOWN].find((k) => k.toLowerCase() === key.toLowerCase()) ?? closest(key, [...KNOWN])
}

/** Validate option keys and values once, and fill defaults. Unknown keys are an error, not a silent no-op. */
export function resolveOptions(options: DatabaseOptions = {}): ResolvedOptions {
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      const guess = nearest(key)
      throw new PgcrewError('UNKNOWN_OPTION', `unknown option "${key}"${guess ? ` (did you mean "${guess}"?)` : ''}; see the Options table in the README`)
    }
  }
  const o = options
  if (o.pooling !== undefined && o.pooling !== 'pooled' && o.pooling !== 'per-transaction') {
    throw new PgcrewError('INVALID_OPTION', `pooling must be "pooled" or "per-transaction", not "${String(o.pooling)}"`)
  }
  for (const key of ['max', 'idleTimeoutMillis', 'connectionTimeoutMillis', 'maxLifetimeSeconds', 'closeTimeoutMillis', 'port', 'statementTimeoutMillis'] as const) {
    const v = o[key]
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || (key === 'max' && v < 1))) {
      throw new PgcrewError('INVALID_OPTION', `${key} must be a whole number${key === 'max' ? ' ≥ 1' : ' ≥ 0'}, not ${String(v)}`)
    }
  }
  const resolved = {
    ...o,
    pooling: o.pooling ?? DEFAULTS.pooling,
    max: o.max ?? DEFAULTS.max,
    idleTimeoutMillis: o.idleTimeoutMillis ?? DEFAULTS.idleTimeoutMillis,
    connectionTimeoutMillis: o.connectionTimeoutMillis ?? DEFAULTS.connectionTimeoutMillis,
    maxLifetimeSeconds: o.maxLifetimeSeconds ?? DEFAULTS.maxLifetimeSeconds,
    prePing: o.prePing ?? DEFAULTS.prePing,
    closeTimeoutMillis: o.closeTimeoutMillis ?? DEFAULTS.closeTimeoutMillis,
    env: o.env ?? process.env,
  }
  if ('password' in resolved) {
    const { password } = resolved
    delete (resolved as { password?: string }).password
    Object.defineProperty(resolved, 'password', { value: password, enumerable: false })
  }
  return Object.freeze(resolved)
}
