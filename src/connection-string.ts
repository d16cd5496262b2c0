import { parse as parsePgUri } from 'pg-connection-string'
import type { ConnectionSettings } from './connection-params.ts'
import { PgcrewError } from './errors.ts'

/** A parsed connection string: settings, server settings (`-c` GUCs) and maybe a password. */
export interface ParsedConnectionString {
  settings: ConnectionSettings
  /** Server settings from a pq:// IRI's query (`?work_mem=64MB`), applied at connect. */
  serverSettings: Record<string, string>
  /** Non-enumerable. */
  readonly password?: string
}

/** Replace the password in a URI with `***` so it can go into an error or a log. */
export function maskConnectionString(uri: string): string {
  return uri.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@')
}

function withPassword(result: Omit<ParsedConnectionString, 'password'>, password: string | undefined): ParsedConnectionString {
  if (password !== undefined && password !== '') Object.defineProperty(result, 'password', { value: password, enumerable: false })
  return result as ParsedConnectionString
}

function bad(uri: string, why: string, cause?: unknown): PgcrewError {
  return new PgcrewError('INVALID_CONNECTION_STRING', `invalid connection string ${maskConnectionString(uri)}: ${why}`, { cause })
}

const DRIVER_PARAMS: Record<string, keyof ConnectionSettings> = {
  host: 'host',
  port: 'port',
  dbname: 'dbname',
  database: 'dbname',
  user: 'user',
  sslmode: 'sslmode',
  application_name: 'applicationName',
  connect_timeout: 'connectTimeoutSeconds',
  options: 'options',
  search_path: 'searchPath',
  statement_timeout: 'statementTimeoutMillis',
}

function setDriverParam(settings: ConnectionSettings, key: string, value: string, uri: string): void {
  const target = DRIVER_PARAMS[key]
  if (!target) throw bad(uri, `unknown driver parameter [${key}]; known: ${Object.keys(DRIVER_PARAMS).join(', ')}`)
  if (target === 'port' || target === 'connectTimeoutSeconds' || target === 'statementTimeoutMillis') {
    if (!/^\d+$/.test(value)) throw bad(uri, `[${key}] must be a whole number`)
    ;(settings as Record<string, unknown>)[target] = Number(value)
  } else {
    ;(settings as Record<string, unknown>)[target] = value
  }
}

/** py-postgresql's `pq://user:pass@host:port/db?setting=v&[driver_param]=v#schema1,schema2`. */
function parsePqIri(uri: string): ParsedConnectionString {
  const m = /^pq:\/\/(?:([^@/]*)@)?(\[[^\]]*\]|[^:/?#]*)?(?::([^/?#]*))?(?:\/([^?#]*))?(?:\?([^#]*))?(?:#(.*))?$/i.exec(uri)
  if (!m) throw bad(uri, 'expected pq://user:pass@host:port/dbname?setting=value&[driver_param]=value#schema')
  const [, userinfo, rawHost, rawPort, rawDb, query, fragment] = m
  const settings: ConnectionSettings = {}
  let password: string | undefined
  try {
    if (userinfo) {
      const colon = userinfo.indexOf(':')
      settings.user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon)) || undefined
      if (colon >= 0) password = decodeURIComponent(userinfo.slice(colon + 1))
    }
    if (rawHost) {
      const host = decodeURIComponent(rawHost)
      settings.host = host.startsWith('[unix:') ? host.slice(6, -1) : host.startsWith('[') ? host.slice(1, -1) : host
    }
    if (rawPort) {
      if (!/^\d+$/.test(rawPort)) throw bad(uri, `port "${rawPort}" is not a number`)
      settings.port = Number(rawPort)
    }
    if (rawDb) settings.dbname = decodeURIComponent(rawDb)
    const serverSettings: Record<string, string> = {}
    for (const pair of (query ?? '').split('&').filter(Boolean)) {
      const eq = pair.indexOf('=')
      const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq))
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '))
      const driver = /^\[(.+)\]$/.exec(key)
      if (driver) setDriverParam(settings, driver[1]!, value, uri)
      else serverSettings[key] = value
    }
    if (fragment) settings.searchPath = decodeURIComponent(fragment).split(',').map((s) => s.trim()).filter(Boolean).join(',')
    return withPassword({ settings, serverSettings }, password)
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw bad(uri, 'malformed percent-encoding', error)
  }
}

/**
 * Parse a `postgres://`/`postgresql://` URI (via pg-connection-string) or a py-postgresql `pq://` IRI.
 *
 * @example parseConnectionString('pq://me@db.example.org/app?work_mem=64MB#analysis,public')
 */
export function parseConnectionString(uri: string): ParsedConnectionString {
  if (/^pq:\/\//i.test(uri)) return parsePqIri(uri)
  if (!/^postgres(ql)?:\/\//i.test(uri)) throw bad(uri, 'it must start with postgres://, postgresql:// or pq://')
  let parsed: ReturnType<typeof parsePgUri>
  try {
    parsed = parsePgUri(uri)
  } catch (error) {
    throw bad(uri, (error as Error).message.replace(uri, maskConnectionString(uri)), error)
  }
  const settings: ConnectionSettings = {}
  if (parsed.host) settings.host = parsed.host
  if (parsed.port) {
    if (!/^\d+$/.test(String(parsed.port))) throw bad(uri, `port "${parsed.port}" is not a number`)
    settings.port = Number(parsed.port)
  }
  if (parsed.database) settings.dbname = parsed.database
  if (parsed.user) settings.user = parsed.user
  const extra = parsed as Record<string, unknown>
  for (const key of ['sslmode', 'application_name', 'connect_timeout', 'options']) {
    if (typeof extra[key] === 'string') setDriverParam(settings, key, extra[key] as string, uri)
  }
  return withPassword({ settings, serverSettings: {} }, parsed.password ?? undefined)
}
