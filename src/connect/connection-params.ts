import { existsSync } from 'node:fs'
import { userInfo } from 'node:os'
import { DEFAULT_SOCKET_DIR } from './pgpass.ts'
import type { Profile } from './profiles.ts'
import { lookupService, type ServiceEntry } from './service-file.ts'
import { closest } from '../errors/did-you-mean.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { parseIntegerSetting } from './integer-setting.ts'
import { showValue } from '../errors/show-value.ts'

/** Where and as whom to connect. Never holds a password. */
export interface ConnectionParams {
  readonly host: string
  readonly port: number
  readonly dbname: string
  readonly user: string
  readonly sslmode?: string
  readonly applicationName?: string
  readonly connectTimeoutSeconds?: number
  /** Raw libpq `options` (e.g. `-c work_mem=64MB`). */
  readonly options?: string
  readonly searchPath?: string
  readonly statementTimeoutMillis?: number
  /** The pg_service.conf service the settings were filled from (`service=`, a profile's `service`, `PGSERVICE`). */
  readonly service?: string
  /** The file that service was read from. */
  readonly serviceFile?: string
  /** The local-socket rule applied: the profile's host, which is this machine, reached through `host` (a socket directory). */
  readonly socketFor?: string
}

/** The connection settings a caller may pass explicitly (all optional). */
export type ConnectionSettings = Partial<{ -readonly [K in Exclude<keyof ConnectionParams, 'serviceFile' | 'socketFor'>]: ConnectionParams[K] }>

/** The PG* variables that say where to connect: with any of them set, the environment is "configured". */
export const PG_ENV_KEYS: readonly string[] = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE']

/** libpq's sslmodes (here, not in connect-options.ts, so connection params need nothing from the options layer above them). */
export const SSLMODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']

/** libpq's default host: its socket directory when it exists, else localhost. */
export function defaultHost(): string {
  return existsSync(DEFAULT_SOCKET_DIR) ? DEFAULT_SOCKET_DIR : 'localhost'
}

function fromProfile(p: Profile | undefined): ConnectionSettings {
  if (!p) return {}
  return {
    host: p.host,
    port: p.port,
    dbname: p.dbname,
    user: p.user,
    sslmode: p.sslmode,
    applicationName: p.application_name,
    connectTimeoutSeconds: p.connect_timeout,
    options: p.options,
    searchPath: p.search_path,
    statementTimeoutMillis: p.statement_timeout,
  }
}

/** The PG* variables holding numbers; read only when no earlier layer sets the value, as libpq does. */
const ENV_INTEGERS = { port: ['PGPORT', 'port'], connectTimeoutSeconds: ['PGCONNECT_TIMEOUT', 'connect_timeout'] } as const

function fromEnv(env: NodeJS.ProcessEnv): ConnectionSettings {
  return {
    host: env.PGHOST || undefined,
    dbname: env.PGDATABASE || undefined,
    user: env.PGUSER || undefined,
    sslmode: env.PGSSLMODE || undefined,
    applicationName: env.PGAPPNAME || undefined,
    options: env.PGOPTIONS || undefined,
  }
}

/** PGPORT / PGCONNECT_TIMEOUT, strictly: `PGPORT=abc` is an error naming PGPORT, never a silent 5432. */
function envInteger(env: NodeJS.ProcessEnv, key: keyof typeof ENV_INTEGERS): number | undefined {
  const [variable, setting] = ENV_INTEGERS[key]
  const text = env[variable]
  // libpq treats an empty variable as unset.
  if (text === undefined || text === '') return undefined
  const { value, problem } = parseIntegerSetting(setting, text)
  if (problem !== undefined) throw new PgcrewError('INVALID_OPTION', `${variable} in the environment ${problem}; fix or unset it`, { details: { option: variable } })
  return value
}

/**
 * The service whose entries fill what the explicit settings and the profile leave unset: named by
 * `service=` in the connection string, else the profile's `service`, else `PGSERVICE` (libpq looks
 * up even an empty PGSERVICE, and fails).
 */
export function findService(explicit: ConnectionSettings, profile: Profile | undefined, env: NodeJS.ProcessEnv): ServiceEntry | undefined {
  if (explicit.service !== undefined) return lookupService(explicit.service, env, 'named by service= in the connection string')
  if (profile?.service !== undefined) return lookupService(profile.service, env, `named by profile ${showValue(profile.name)}`)
  if (env.PGSERVICE !== undefined) return lookupService(env.PGSERVICE, env, 'named by PGSERVICE')
  return undefined
}

/**
 * Resolve every setting in one place, libpq style: explicit > profile > the service (pg_service.conf)
 * > PG* environment > defaults. psql agrees on each step (test/connect/service-file.test.ts).
 *
 * @example resolveConnectionParams({ dbname: 'test' }, profile)
 */
export function resolveConnectionParams(
  explicit: ConnectionSettings,
  profile?: Profile,
  env: NodeJS.ProcessEnv = process.env,
  service: ServiceEntry | undefined = findService(explicit, profile, env),
): ConnectionParams {
  const layers = [explicit, fromProfile(profile), service?.settings ?? {}, fromEnv(env)]
  const pick = <K extends keyof ConnectionSettings>(key: K): ConnectionSettings[K] => {
    for (const layer of layers) if (layer[key] !== undefined) return layer[key]
    return undefined
  }
  const sslmode = pick('sslmode')
  if (sslmode !== undefined && !SSLMODES.includes(sslmode)) {
    // libpq refuses an unknown sslmode; read as anything else, a typo would silently pick a mode.
    const from = ['the options or connection string', `profile "${profile?.name}"`, `service "${service?.name}" in ${service?.file}`, 'PGSSLMODE'][layers.findIndex((l) => l.sslmode !== undefined)]
    const guess = closest(sslmode.toLowerCase(), [...SSLMODES])
    throw new PgcrewError('INVALID_OPTION', `sslmode ${showValue(sslmode)} (from ${from}) is not one of ${SSLMODES.join(', ')}${guess ? ` (did you mean "${guess}"?)` : ''}`)
  }
  // An empty host, user or dbname (`dbname=` in a service) is libpq's default, and hides the PG* variable.
  const user = pick('user') || userInfo().username
  const params: ConnectionParams = {
    host: pick('host') || defaultHost(),
    port: pick('port') ?? envInteger(env, 'port') ?? 5432,
    user,
    dbname: pick('dbname') || user,
    sslmode,
    applicationName: pick('applicationName'),
    connectTimeoutSeconds: pick('connectTimeoutSeconds') ?? envInteger(env, 'connectTimeoutSeconds'),
    options: pick('options'),
    searchPath: pick('searchPath'),
    statementTimeoutMillis: pick('statementTimeoutMillis'),
    service: service?.name,
    serviceFile: service?.file,
  }
  return Object.freeze(Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined))) as unknown as ConnectionParams
}

/** Escape a value for libpq's `options` startup parameter (spaces and backslashes). */
export function escapeOption(value: string): string {
  return value.replace(/[\\ ]/g, (c) => '\\' + c)
}

/** The `options` startup string: the user's raw options plus pgcrew's per-session settings. */
export function startupOptions(params: ConnectionParams, extra: Record<string, string> = {}): string | undefined {
  const settings: Record<string, string> = { ...extra }
  if (params.searchPath) settings.search_path = params.searchPath
  const parts = params.options ? [params.options] : []
  for (const [k, v] of Object.entries(settings)) parts.push(`-c ${k}=${escapeOption(v)}`)
  return parts.length ? parts.join(' ') : undefined
}

/** pg's `ssl` option for a libpq sslmode (pg cannot "prefer": it is treated as disable). */
export function sslFor(sslmode: string | undefined): boolean | { rejectUnauthorized: boolean } | undefined {
  switch (sslmode) {
    case undefined:
    case 'disable':
    case 'allow':
    case 'prefer':
      return undefined
    case 'require':
      return { rejectUnauthorized: false }
    default:
      return { rejectUnauthorized: true }
  }
}
