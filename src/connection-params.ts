import { existsSync } from 'node:fs'
import { userInfo } from 'node:os'
import { DEFAULT_SOCKET_DIR } from './pgpass.ts'
import type { Profile } from './profiles.ts'
import { closest } from './closest.ts'
import { PgcrewError } from './errors.ts'

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
}

/** The connection settings a caller may pass explicitly (all optional). */
export type ConnectionSettings = Partial<{ -readonly [K in keyof ConnectionParams]: ConnectionParams[K] }>

/** The PG* variables that say where to connect: with any of them set, the environment is "configured". */
export const PG_ENV_KEYS: readonly string[] = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGSERVICE']

/** libpq's sslmodes (here, not in options.ts, so connection params need nothing from the options layer above them). */
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

function fromEnv(env: NodeJS.ProcessEnv): ConnectionSettings {
  const num = (v: string | undefined): number | undefined => (v && /^\d+$/.test(v) ? Number(v) : undefined)
  return {
    host: env.PGHOST || undefined,
    port: num(env.PGPORT),
    dbname: env.PGDATABASE || undefined,
    user: env.PGUSER || undefined,
    sslmode: env.PGSSLMODE || undefined,
    applicationName: env.PGAPPNAME || undefined,
    connectTimeoutSeconds: num(env.PGCONNECT_TIMEOUT),
    options: env.PGOPTIONS || undefined,
  }
}

/**
 * Resolve every setting in one place, libpq style: explicit > profile > PG* environment > defaults.
 *
 * @example resolveConnectionParams({ dbname: 'test' }, profile)
 */
export function resolveConnectionParams(explicit: ConnectionSettings, profile?: Profile, env: NodeJS.ProcessEnv = process.env): ConnectionParams {
  const layers = [explicit, fromProfile(profile), fromEnv(env)]
  const pick = <K extends keyof ConnectionSettings>(key: K): ConnectionSettings[K] => {
    for (const layer of layers) if (layer[key] !== undefined) return layer[key]
    return undefined
  }
  const sslmode = pick('sslmode')
  if (sslmode !== undefined && !SSLMODES.includes(sslmode)) {
    // libpq refuses an unknown sslmode; read as anything else, a typo would silently pick a mode.
    const from = ['the options or connection string', `profile "${profile?.name}"`, 'PGSSLMODE'][layers.findIndex((l) => l.sslmode !== undefined)]
    const guess = closest(sslmode.toLowerCase(), [...SSLMODES])
    throw new PgcrewError('INVALID_OPTION', `sslmode "${sslmode}" (from ${from}) is not one of ${SSLMODES.join(', ')}${guess ? ` (did you mean "${guess}"?)` : ''}`)
  }
  const user = pick('user') ?? userInfo().username
  const params: ConnectionParams = {
    host: pick('host') ?? defaultHost(),
    port: pick('port') ?? 5432,
    user,
    dbname: pick('dbname') ?? user,
    sslmode,
    applicationName: pick('applicationName'),
    connectTimeoutSeconds: pick('connectTimeoutSeconds'),
    options: pick('options'),
    searchPath: pick('searchPath'),
    statementTimeoutMillis: pick('statementTimeoutMillis'),
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
