import { closest } from '../errors/did-you-mean.ts'
import { SSLMODES } from './connection-params.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showValue } from '../errors/show-value.ts'
import type { OnConnectHook } from './connect-client.ts'

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
  /**
   * Run statements that have parameters as named prepared statements, parsed once per connection
   * (at most 256 per connection). Set false behind PgBouncer in transaction mode.
   */
  prepareStatements?: boolean
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
export const DEFAULTS: Readonly<{
  pooling: Pooling
  max: number
  idleTimeoutMillis: number
  connectionTimeoutMillis: number
  maxLifetimeSeconds: number
  prePing: boolean
  prepareStatements: boolean
  closeTimeoutMillis: number
}> = Object.freeze({
  pooling: 'pooled' as Pooling,
  max: 10,
  idleTimeoutMillis: 10_000,
  connectionTimeoutMillis: 30_000,
  maxLifetimeSeconds: 0,
  prePing: false,
  prepareStatements: true,
  closeTimeoutMillis: 10_000,
})

/** What an option's value must be: `ok` decides, `must` completes "<option> must be …" in the error. */
interface Rule {
  readonly must: string
  readonly ok: (value: unknown) => boolean
  /** Never echo the value (a password, or a URI that may hold one): name its type only. */
  readonly secret?: boolean
  /** For an array or object that passed `ok`: the rule for each element (reported as `key[i]` / `key.name`). */
  readonly each?: Rule
  /** The allowed strings, for a "did you mean" on a near miss. */
  readonly choices?: readonly string[]
}

/** The largest delay setTimeout honours; Node turns a longer one into 1 ms (and the server caps statement_timeout alike). */
const MAX_TIMER_MILLIS = 2_147_483_647

/** The version suffix rule `changeVersion()` and `pgcrew check --dbversion` apply too. */
export const DBVERSION_PATTERN = /^[\w.-]+$/

const isString = (v: unknown): v is string => typeof v === 'string'
const isHook = (v: unknown): boolean => typeof v === 'function' || (typeof v === 'string' && v !== '')
const hook: Rule = { must: 'a function or a module path', ok: isHook }
const text: Rule = { must: 'a string', ok: isString }
const flag: Rule = { must: 'true or false', ok: (v) => typeof v === 'boolean' }
const fn: Rule = { must: 'a function', ok: (v) => typeof v === 'function' }
function oneOf(choices: readonly string[]): Rule {
  const quoted = choices.map((c) => `"${c}"`)
  return { must: `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`, ok: (v) => isString(v) && choices.includes(v), choices }
}
function whole(min: number, max = MAX_TIMER_MILLIS): Rule {
  return { must: `a whole number from ${min} to ${max}`, ok: (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max }
}

/**
 * Every option and the rule for its value: the one list of known keys. Only the options object is
 * checked here; profile values and PG* variables are parsed (from strings) where they are read.
 */
const RULES: { readonly [K in keyof Required<DatabaseOptions>]: Rule } = {
  profile: text,
  profilesFile: text,
  connectionString: { ...text, secret: true },
  host: text,
  port: whole(1, 65535),
  dbname: text,
  user: text,
  password: { ...text, secret: true },
  admin: text,
  readonly: flag,
  dbversion: { must: 'a string of letters, digits, _ . and -', ok: (v) => isString(v) && DBVERSION_PATTERN.test(v) },
  pooling: oneOf(['pooled', 'per-transaction'] satisfies Pooling[]),
  max: { must: 'a whole number ≥ 1', ok: (v) => Number.isInteger(v) && (v as number) >= 1 },
  idleTimeoutMillis: whole(0),
  connectionTimeoutMillis: whole(0),
  maxLifetimeSeconds: whole(0, Math.floor(MAX_TIMER_MILLIS / 1000)),
  prePing: flag,
  prepareStatements: flag,
  closeTimeoutMillis: whole(0),
  applicationName: text,
  sslmode: oneOf(SSLMODES),
  options: text,
  searchPath: text,
  statementTimeoutMillis: whole(0),
  onConnect: { must: 'a function, a module path, or an array of those', ok: (v) => isHook(v) || Array.isArray(v), each: hook },
  pgpassFile: text,
  onWarning: fn,
  env: {
    must: 'an object of strings, like process.env',
    ok: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
    // Environment values may be secrets (PGPASSWORD): errors name their type only.
    each: { must: 'a string', ok: (v) => v === undefined || isString(v), secret: true },
  },
}

const KNOWN = new Set<string>(Object.keys(RULES))

/** How a wrong value reads in an error: its type, and the value itself unless it may be secret. */
export function describeValue(value: unknown, secret = false): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'string':
      return secret ? 'a string' : `the string ${showValue(value)}`
    case 'number':
      return secret ? 'a number' : `the number ${String(value)}`
    case 'bigint':
      return secret ? 'a bigint' : `the bigint ${String(value)}n`
    case 'boolean':
      return `the boolean ${String(value)}`
    case 'function':
      return 'a function'
    case 'symbol':
      return 'a symbol'
    case 'undefined':
      return 'undefined'
    default: {
      const name = (value as object).constructor?.name
      return name && name !== 'Object' ? `a ${name} object` : 'an object'
    }
  }
}

/** Options after validation, with defaults filled in from {@link DEFAULTS}. */
export type ResolvedOptions = Readonly<Omit<DatabaseOptions, keyof typeof DEFAULTS> & typeof DEFAULTS & { env: NodeJS.ProcessEnv }>

/** Refuse a value its rule does not allow, naming the option, what it must be and what it got. */
function checkValue(option: string, where: string, value: unknown, rule: Rule): void {
  if (!rule.ok(value)) {
    const guess = rule.choices && isString(value) ? closest(value.toLowerCase(), [...rule.choices]) : undefined
    throw new PgcrewError('INVALID_OPTION', `${where} must be ${rule.must}, not ${describeValue(value, rule.secret)}${guess ? ` (did you mean "${guess}"?)` : ''}`, { details: { option } })
  }
  if (rule.each && typeof value === 'object' && value !== null) {
    const array = Array.isArray(value)
    for (const [k, v] of Object.entries(value)) checkValue(option, array ? `${where}[${k}]` : `${where}.${k}`, v, rule.each)
  }
}

/** Refuse anything but a whole number in [min, max] for `option` (for options outside DatabaseOptions). */
export function requireWhole(option: string, value: unknown, min: number, max = MAX_TIMER_MILLIS): void {
  checkValue(option, option, value, whole(min, max))
}

function nearest(key: string): string | undefined {
  return [...KNOWN].find((k) => k.toLowerCase() === key.toLowerCase()) ?? closest(key, [...KNOWN])
}

/** Validate option keys and values once, and fill defaults. Unknown keys are an error, not a silent no-op. */
export function resolveOptions(options: DatabaseOptions = {}): ResolvedOptions {
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      const guess = nearest(key)
      throw new PgcrewError('UNKNOWN_OPTION', `unknown option ${showValue(key)}${guess ? ` (did you mean "${guess}"?)` : ''}; see the Options table in the README`)
    }
  }
  const o = options
  for (const [key, value] of Object.entries(o)) {
    // An option left undefined means "not set"; everything else must have the right type and value.
    if (value !== undefined) checkValue(key, key, value, RULES[key as keyof DatabaseOptions])
  }
  const resolved = {
    ...o,
    pooling: o.pooling ?? DEFAULTS.pooling,
    max: o.max ?? DEFAULTS.max,
    idleTimeoutMillis: o.idleTimeoutMillis ?? DEFAULTS.idleTimeoutMillis,
    connectionTimeoutMillis: o.connectionTimeoutMillis ?? DEFAULTS.connectionTimeoutMillis,
    maxLifetimeSeconds: o.maxLifetimeSeconds ?? DEFAULTS.maxLifetimeSeconds,
    prePing: o.prePing ?? DEFAULTS.prePing,
    prepareStatements: o.prepareStatements ?? DEFAULTS.prepareStatements,
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
