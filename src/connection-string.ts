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

/**
 * Replace the password in a URI with `***` so it can go into an error or a log. Masks up to the
 * last `@`: a password often holds an unencoded `@` or `/`, and showing too little beats leaking.
 */
export function maskConnectionString(uri: string): string {
  return (
    uri
      // user:password@ after an optional scheme with any number of slashes (a typo like postgres:/ too)
      .replace(/^((?:[a-z][a-z0-9+.-]*:\/*)?[^:/@?#\s]*:).*@/i, '$1***@')
      // password=… in a query string or a key=value list
      .replace(/((?:^|[?&;\s])password=)[^&;\s]*/gi, '$1***')
  )
}

/**
 * Mask anything in free text that looks like a password in a connection string (the CLI's last line
 * of defence before it prints an error): `scheme://user:secret@` and `password=secret`.
 */
export function maskSecretsInText(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/+[^\s:/@]*:)[^\s@]*@/gi, '$1***@').replace(/((?:^|[?&;\s])password=)[^&;\s]*/gi, '$1***')
}

/** Does the string carry userinfo (`user:pass@` or `user@`)? Then its pieces may be a password. */
function hasCredentials(uri: string): boolean {
  return uri.includes('@')
}

/** Name a bad port without echoing it when it may be a piece of a mis-encoded password. */
function badPort(uri: string, port: string): PgcrewError {
  return hasCredentials(uri)
    ? bad(uri, 'the port is not a number; percent-encode any : / @ # ? in the user name or password')
    : bad(uri, `port "${port}" is not a number`)
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

/** A schema name for search_path: quoted unless it is a plain lower-case identifier. */
function searchPathName(name: string): string {
  if (name === '' || /^[a-z_][a-z0-9_$]*$/.test(name) || /^"(?:[^"]|"")*"$/.test(name) || name === '$user') return name
  return '"' + name.replaceAll('"', '""') + '"'
}

/** py-postgresql's `pq://user:pass@host:port/db?setting=v&[driver_param]=v#schema1,schema2`. */
function parsePqIri(uri: string): ParsedConnectionString {
  // userinfo runs to the last '@' of the authority: passwords often hold an unencoded '@'.
  const m = /^pq:\/\/(?:([^/?#]*)@)?(\[[^\]]*\]|[^:/?#]*)?(?::([^/?#]*))?(?:\/([^?#]*))?(?:\?([^#]*))?(?:#(.*))?$/i.exec(uri)
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
      if (/^\[unix:/i.test(host)) {
        // py-postgresql: [unix:...] is the socket file's path with ':' for '/'; pg wants its directory.
        const path = host.slice(6, -1).replaceAll(':', '/')
        const socket = /^(.*)\/\.s\.PGSQL\.(\d+)$/.exec(path)
        settings.host = socket ? socket[1] || '/' : path
        if (socket) settings.port = Number(socket[2])
      } else {
        settings.host = host.startsWith('[') ? host.slice(1, -1) : host
      }
    }
    if (rawPort) {
      if (!/^\d+$/.test(rawPort)) throw badPort(uri, rawPort)
      settings.port = Number(rawPort)
    }
    if (rawDb) settings.dbname = decodeURIComponent(rawDb)
    const serverSettings: Record<string, string> = {}
    for (const pair of (query ?? '').split('&').filter(Boolean)) {
      const eq = pair.indexOf('=')
      const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq))
      // IRIs percent-encode; '+' is a plus (timezone=Etc/GMT+5), not a form-encoded space.
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1))
      const driver = /^\[(.+)\]$/.exec(key)
      if (driver) setDriverParam(settings, driver[1]!, value, uri)
      else serverSettings[key] = value
    }
    // Split before decoding, as py-postgresql does, so %2C stays inside a schema name.
    if (fragment) settings.searchPath = fragment.split(',').map((s) => searchPathName(decodeURIComponent(s).trim())).filter(Boolean).join(',')
    return withPassword({ settings, serverSettings }, password)
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw bad(uri, 'malformed percent-encoding', error)
  }
}

/** What pg-connection-string itself puts in its result (whatever the query held). */
const PG_CONNECTION_STRING_KEYS = new Set(['host', 'port', 'database', 'user', 'password', 'ssl', 'client_encoding'])
/** Query parameters a postgres:// URI may carry; anything else would be dropped silently, so it is refused. */
const URI_PARAMS = new Set([...PG_CONNECTION_STRING_KEYS, 'dbname', 'sslmode', 'application_name', 'connect_timeout', 'options'])

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
    // The cause is safe to keep: pg-connection-string redacts the input URL's copy of the string.
    throw bad(uri, (error as Error).message.replace(uri, maskConnectionString(uri)), error)
  }
  const extra = parsed as Record<string, unknown>
  for (const key of Object.keys(extra)) {
    if (!URI_PARAMS.has(key)) {
      throw bad(uri, `unsupported parameter "${key}"; known: ${[...URI_PARAMS].filter((k) => !PG_CONNECTION_STRING_KEYS.has(k)).join(', ')} (server settings go in options=-c%20name%3Dvalue or a pq:// IRI)`)
    }
  }
  const settings: ConnectionSettings = {}
  if (parsed.host) settings.host = parsed.host
  if (parsed.port) {
    if (!/^\d+$/.test(String(parsed.port))) throw badPort(uri, String(parsed.port))
    settings.port = Number(parsed.port)
  }
  if (parsed.database) settings.dbname = parsed.database
  else if (typeof extra.dbname === 'string' && extra.dbname) settings.dbname = extra.dbname
  if (parsed.user) settings.user = parsed.user
  for (const key of ['sslmode', 'application_name', 'connect_timeout', 'options']) {
    if (typeof extra[key] === 'string') setDriverParam(settings, key, extra[key] as string, uri)
  }
  // node-postgres users write ?ssl=true; that is libpq's sslmode=require.
  if (extra.ssl === true && settings.sslmode === undefined) settings.sslmode = 'require'
  return withPassword({ settings, serverSettings: {} }, parsed.password ?? undefined)
}
