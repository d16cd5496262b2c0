import { parse as parsePgUri } from 'pg-connection-string'
import type { ConnectionSettings } from './connection-params.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { parseIntegerSetting } from './integer-setting.ts'
import { parseKeywordValueString } from './keyword-value-string.ts'
import { showText, showValue } from '../errors/show-value.ts'

/** A parsed connection string: settings, server settings (`-c` GUCs) and maybe a password. */
export interface ParsedConnectionString {
  settings: ConnectionSettings
  /** Server settings from a pq:// IRI's query (`?work_mem=64MB`), applied at connect. */
  serverSettings: Record<string, string>
  /** Non-enumerable. */
  readonly password?: string
}

/** `password=…` in a query string or a key=value list; a quoted value ('se cret') is masked whole. */
const PASSWORD_PARAM = /((?:^|[?&;\s])password\s*=\s*)('(?:\\.|[^'\\])*'?|[^&;\s]*)/gi

/**
 * Replace the password in a URI with `***` so it can go into an error or a log; the scheme, the
 * user and everything after the userinfo stay. Masks up to the last `@`: a password often holds an
 * unencoded `@` or `/`, and showing too little beats leaking. A user with no password
 * (`pq://alice@h/db`) has nothing to mask, as py-postgresql's own obscure_password leaves it.
 */
export function maskConnectionString(uri: string): string {
  // A scheme with any number of slashes (a typo like postgres:/ too); a bare user:pw@host has none.
  const scheme = /^[a-z][a-z0-9+.-]*:\/+/i.exec(uri)?.[0] ?? ''
  const rest = uri.slice(scheme.length)
  const at = rest.lastIndexOf('@')
  const colon = rest.indexOf(':')
  const masked = at >= 0 && colon >= 0 && colon < at ? scheme + rest.slice(0, colon + 1) + '***' + rest.slice(at) : uri
  return masked.replace(PASSWORD_PARAM, '$1***')
}

/**
 * Mask anything in free text that looks like a password in a connection string (the CLI's last line
 * of defence before it prints an error): `scheme://user:secret@` (through the word's last `@`) and
 * `password=secret`.
 */
export function maskSecretsInText(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/+[^\s:/@]*:)\S*@/gi, '$1***@').replace(PASSWORD_PARAM, '$1***')
}

/**
 * Was the userinfo cut short by an unencoded `/`, `?` or `#` in the password? Then the authority
 * holds no `@` but the rest of the string does, and what reads as the port is a piece of the password.
 */
function passwordMayBeSplit(uri: string): boolean {
  const authority = /^[^:]*:\/\/([^/?#]*)/.exec(uri)?.[1] ?? ''
  return !authority.includes('@') && uri.includes('@')
}

/**
 * Check a port from the authority or the query as libpq does (decimal digits, 1-65535): `:0` and
 * `:99999` are refused here rather than reaching the network or Node's "Invalid URL". The value is
 * not echoed when it may be a piece of a password holding an unencoded `/` (see passwordMayBeSplit).
 */
function readPort(uri: string, text: string, where: string): number {
  const { value, problem } = parseIntegerSetting('port', text)
  if (problem === undefined) return value
  if (passwordMayBeSplit(uri)) throw bad(uri, `the ${where} is not a port number from 1 to 65535; percent-encode any : / @ # ? in the user name or password`)
  throw bad(uri, `the ${where} ${problem}`)
}

/**
 * libpq decodes every %XX in a URI and refuses anything else: psql says `invalid percent-encoded
 * token: "%ZZpw"` and `forbidden value %00 in percent-encoded value`. pg-connection-string instead
 * re-encodes a stray % and would send "%ZZpw" as the password, so this runs first, for both schemes.
 * The token is not shown: it is often the password.
 */
function checkPercentEncoding(uri: string): void {
  if (/%(?![0-9a-f]{2})/i.test(uri)) throw bad(uri, 'malformed percent-encoding: a % must be followed by two hex digits (write a literal % as %25)')
  if (/%00/.test(uri)) throw bad(uri, 'percent-encoding %00 (a NUL character) is not allowed')
  try {
    decodeURIComponent(uri)
  } catch (error) {
    throw bad(uri, 'malformed percent-encoding: the %XX bytes are not UTF-8', error)
  }
}

function withPassword(result: Omit<ParsedConnectionString, 'password'>, password: string | undefined): ParsedConnectionString {
  if (password !== undefined && password !== '') Object.defineProperty(result, 'password', { value: password, enumerable: false })
  return result as ParsedConnectionString
}

function bad(uri: string, why: string, cause?: unknown): PgcrewError {
  return new PgcrewError('INVALID_CONNECTION_STRING', `invalid connection string ${showText(maskConnectionString(uri), 200)}: ${why}`, { cause })
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
  service: 'service',
}

/** A driver parameter: `[key]=value` in a pq:// IRI (`bracketed`), `key=value` in a postgres:// URI. */
function setDriverParam(settings: ConnectionSettings, key: string, value: string, uri: string, bracketed: boolean): void {
  const name = bracketed ? `[${key}]` : key
  const target = DRIVER_PARAMS[key]
  if (!target) throw bad(uri, `unknown driver parameter [${showText(key)}]; known: ${Object.keys(DRIVER_PARAMS).join(', ')}`)
  if (target === 'port') settings.port = readPort(uri, value, `${name} parameter`)
  else if (target === 'connectTimeoutSeconds' || target === 'statementTimeoutMillis') {
    const setting = target === 'connectTimeoutSeconds' ? 'connect_timeout' : 'statement_timeout'
    const { value: n, problem } = parseIntegerSetting(setting, value)
    if (problem !== undefined) throw bad(uri, `${name} ${problem}`)
    settings[target] = n
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
    if (rawHost?.startsWith('[') && !rawHost.endsWith(']')) throw bad(uri, 'the host opens a [ that is never closed; write [::1] or [unix:...]')
    if (rawHost) {
      const host = decodeURIComponent(rawHost)
      if (/^\[unix:/i.test(host)) {
        // py-postgresql: [unix:...] is the socket file's path with ':' for '/'; pg wants its directory.
        const path = host.slice(6, -1).replaceAll(':', '/')
        const socket = /^(.*)\/\.s\.PGSQL\.(\d+)$/.exec(path)
        settings.host = socket ? socket[1] || '/' : path
        if (socket) settings.port = readPort(uri, socket[2]!, "socket file's port")
      } else {
        settings.host = host.startsWith('[') ? host.slice(1, -1) : host
      }
    }
    if (rawPort) settings.port = readPort(uri, rawPort, 'port')
    // py-postgresql splits the path on '/' before decoding and takes the first segment as the
    // database (its test_iri: 'database': 'database_name', 'path': ['path']); the segments after
    // it are its own "path" field, which never reaches the server, so pgcrew has no use for them.
    const db = rawDb?.split('/')[0]
    if (db) settings.dbname = decodeURIComponent(db)
    const serverSettings: Record<string, string> = {}
    for (const pair of (query ?? '').split('&').filter(Boolean)) {
      const eq = pair.indexOf('=')
      const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq))
      // IRIs percent-encode; '+' is a plus (timezone=Etc/GMT+5), not a form-encoded space.
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1))
      if (key === '') throw bad(uri, 'a query parameter has no name (?=value or &&)')
      const driver = /^\[(.+)\]$/.exec(key)
      if (driver) setDriverParam(settings, driver[1]!, value, uri, true)
      // "[port=5433" would otherwise become a server setting named "[port".
      else if (/[[\]]/.test(key)) throw bad(uri, `parameter ${showValue(key)} has an unmatched bracket; driver parameters are written [name]=value`)
      else serverSettings[key] = value
    }
    // Split before decoding, as py-postgresql does, so %2C stays inside a schema name.
    if (fragment)
      settings.searchPath = fragment
        .split(',')
        .map((s) => searchPathName(decodeURIComponent(s).trim()))
        .filter(Boolean)
        .join(',')
    return withPassword({ settings, serverSettings }, password)
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw bad(uri, 'malformed percent-encoding', error)
  }
}

/** What pg-connection-string itself puts in its result (whatever the query held). */
const PG_CONNECTION_STRING_KEYS = new Set(['host', 'port', 'database', 'user', 'password', 'ssl', 'client_encoding'])
/** Query parameters a postgres:// URI may carry; anything else would be dropped silently, so it is refused. */
const URI_PARAMS = new Set([...PG_CONNECTION_STRING_KEYS, 'dbname', 'sslmode', 'application_name', 'connect_timeout', 'options', 'service'])

/**
 * Parse a `postgres://`/`postgresql://` URI (via pg-connection-string), a py-postgresql `pq://` IRI,
 * or libpq's `key=value` string (`service=obs user=ann`).
 *
 * @example parseConnectionString('pq://me@db.example.org/app?work_mem=64MB#analysis,public')
 */
export function parseConnectionString(uri: string): ParsedConnectionString {
  const pq = /^pq:\/\//i.test(uri)
  // libpq's rule (recognized_connection_string): a URI by its prefix, else key/value if it holds "=".
  if (!pq && !/^postgres(ql)?:\/\//i.test(uri)) {
    if (uri.includes('=') && !/^[a-z][a-z0-9+.-]*:\//i.test(uri)) return parseKeywordValueString(uri)
    throw bad(uri, 'it must start with postgres://, postgresql:// or pq://, or be key=value pairs (service=name user=me)')
  }
  checkPercentEncoding(uri)
  if (pq) return parsePqIri(uri)
  // The authority's port is checked before URL parsing, which would say only "Invalid URL".
  const hostPort = /^[^:]+:\/\/([^/?#]*)/.exec(uri)![1]!.replace(/^.*@/, '')
  const authorityPort = /^(?:\[[^\]]*\]|[^:]*):(.*)$/.exec(hostPort)?.[1]
  if (authorityPort) readPort(uri, authorityPort, 'port')
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
      throw bad(
        uri,
        `unsupported parameter ${showValue(key)}; known: ${[...URI_PARAMS].filter((k) => !PG_CONNECTION_STRING_KEYS.has(k)).join(', ')} (server settings go in options=-c%20name%3Dvalue or a pq:// IRI)`,
      )
    }
  }
  const settings: ConnectionSettings = {}
  if (parsed.host) settings.host = parsed.host
  if (parsed.port) settings.port = readPort(uri, String(parsed.port), 'port')
  if (parsed.database) settings.dbname = parsed.database
  else if (typeof extra.dbname === 'string' && extra.dbname) settings.dbname = extra.dbname
  if (parsed.user) settings.user = parsed.user
  for (const key of ['sslmode', 'application_name', 'connect_timeout', 'options', 'service']) {
    if (typeof extra[key] === 'string') setDriverParam(settings, key, extra[key] as string, uri, false)
  }
  // node-postgres users write ?ssl=true; that is libpq's sslmode=require.
  if (extra.ssl === true && settings.sslmode === undefined) settings.sslmode = 'require'
  return withPassword({ settings, serverSettings: {} }, parsed.password ?? undefined)
}
