// libpq's connection keywords (`host=…` in a service file or a key/value connection string): which
// ones pgcrew honours, and how a value written after one becomes a connection setting.
import type { ConnectionSettings } from './connection-params.ts'
import { parseIntegerSetting } from './integer-setting.ts'
import { showValue } from '../errors/show-value.ts'

/** The libpq keywords pgcrew honours, and the setting each one fills. */
const SUPPORTED: Record<string, keyof ConnectionSettings | 'password'> = {
  host: 'host',
  port: 'port',
  dbname: 'dbname',
  user: 'user',
  password: 'password',
  sslmode: 'sslmode',
  application_name: 'applicationName',
  connect_timeout: 'connectTimeoutSeconds',
  options: 'options',
  service: 'service',
}

/** libpq's other keywords (15 to 17): valid to libpq, but nothing pg (and so pgcrew) can do. */
const UNSUPPORTED = new Set(
  (
    'passfile channel_binding hostaddr client_encoding fallback_application_name keepalives keepalives_idle keepalives_interval ' +
    'keepalives_count tcp_user_timeout sslcompression sslcert sslkey sslpassword sslrootcert sslcrl sslcrldir sslsni requirepeer ' +
    'ssl_min_protocol_version ssl_max_protocol_version gssencmode krbsrvname gsslib replication target_session_attrs require_auth ' +
    'sslcertmode load_balance_hosts sslnegotiation gssdelegation'
  ).split(' '),
)

/** The keywords pgcrew honours, for messages. */
export const LIBPQ_KEYWORDS: readonly string[] = Object.keys(SUPPORTED)

/** Is `key` one of libpq's connection keywords (whether or not pgcrew honours it)? */
export function isLibpqKeyword(key: string): boolean {
  return key in SUPPORTED || UNSUPPORTED.has(key)
}

/** Settings filled from libpq keywords, with the password kept apart. */
export interface KeywordSettings {
  settings: ConnectionSettings
  password?: string
}

/**
 * Set `key=value` on `into` as libpq reads it; returns why not, as a phrase (the caller says where),
 * or undefined. A value is never echoed: it may be a password. An empty value is libpq's default for
 * that keyword (port 5432, no timeout), which the PG* variables below it may not change; an empty
 * host, user or dbname is kept as '' for the same reason and means the default where it is resolved.
 */
export function applyKeyword(into: KeywordSettings, key: string, value: string): string | undefined {
  const target = SUPPORTED[key]
  if (target === undefined) {
    if (UNSUPPORTED.has(key)) return `libpq's ${showValue(key)} is not supported by pgcrew (it supports ${LIBPQ_KEYWORDS.join(', ')})`
    return `invalid connection option ${showValue(key)} (known: ${LIBPQ_KEYWORDS.join(', ')})`
  }
  const settings = into.settings as Record<string, unknown>
  if (target === 'password') {
    // An empty password is no password: libpq then looks in the pgpass file.
    if (value === '') delete into.password
    else into.password = value
  } else if (target === 'port' || target === 'connectTimeoutSeconds') {
    const setting = target === 'port' ? 'port' : 'connect_timeout'
    if (value === '') settings[target] = target === 'port' ? 5432 : 0
    else {
      const { value: n, problem } = parseIntegerSetting(setting, value)
      if (problem !== undefined) return `${key} ${problem}`
      settings[target] = n
    }
  } else if (target === 'sslmode' && value === '') settings[target] = 'prefer'
  else settings[target] = value
  return undefined
}
