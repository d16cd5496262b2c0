import type { ConnectionParams } from './connection-params.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showText, showValue } from '../errors/show-value.ts'
import { findPassword, type ClientSpec, type PasswordSource } from './connect-client.ts'

/** `user@host:port/dbname` — what libpq would name in its messages (cut and escaped: names are typed). */
export function describeTarget(params: ConnectionParams): string {
  // A role or database name is at most 63 bytes and a host name 253: longer text is a mistake to cut.
  const host = showText(params.host.startsWith('/') ? `socket ${params.host}` : params.host, 260)
  return `${showText(params.user, 64)}@${host}:${params.port}/${showText(params.dbname, 64)}`
}

function passwordHint(source: PasswordSource, origin: string | undefined): string {
  switch (source.kind) {
    case 'option':
      return `the password came from ${origin ?? 'the password option or connection string'}`
    case 'PGPASSWORD':
      return 'the password came from PGPASSWORD'
    case 'pgpass':
      return `password retrieved from file "${source.file}" line ${source.line}`
    case 'none':
      if (source.ignored) return `no password was found: the password file "${source.file}" was ignored because ${source.ignored}`
      return `no password was found: set PGPASSWORD or add a line to ${source.file} (host:port:dbname:user:password)`
  }
}

/**
 * Turn a failed connection attempt into a typed error that says what to do; never includes the
 * password. `profile` names where the settings came from.
 */
export function connectError(error: unknown, spec: ClientSpec, profile?: string): PgcrewError {
  if (error instanceof PgcrewError) return error
  const e = error as { code?: string; message?: string }
  const from = [profile && `profile ${showValue(profile)}`, spec.params.service !== undefined && `service ${showValue(spec.params.service)} in ${spec.params.serviceFile}`].filter(Boolean)
  const target = describeTarget(spec.params) + (from.length ? ` (${from.join(', ')})` : '')
  const details = { target: describeTarget(spec.params), profile, sqlstate: e.code }
  const message = String(e.message ?? error)
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
    // The name did not resolve: no server was asked, so "is it running" would send people the wrong way.
    const why = e.code === 'ENOTFOUND' ? `unknown host ${showValue(spec.params.host, 260)}` : `the host name ${showValue(spec.params.host, 260)} could not be resolved just now (DNS did not answer)`
    return new PgcrewError('CONNECTION_REFUSED', `cannot connect to ${target}: ${why}; check the host name${e.code === 'EAI_AGAIN' ? ' and your network' : ''}`, { cause: error, details })
  }
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EHOSTUNREACH') {
    return new PgcrewError('CONNECTION_REFUSED', `cannot connect to ${target}: nothing is listening there; is the server running, and are host and port right?`, { cause: error, details })
  }
  if (e.code === '28P01' || /SASL|client password must be|password authentication/i.test(message)) {
    const { source } = findPassword(spec)
    return new PgcrewError('AUTHENTICATION_FAILED', `password authentication failed for role ${showValue(spec.params.user, 64)} at ${target}; ${passwordHint(source, spec.passwordOrigin)}`, {
      cause: error,
      details,
    })
  }
  if (e.code === '3D000') {
    return new PgcrewError('DATABASE_NOT_FOUND', `database ${showValue(spec.params.dbname, 64)} does not exist at ${target}; create it, or check dbname/dbversion`, { cause: error, details })
  }
  if (e.code === '28000' && /role .* does not exist/.test(message)) {
    return new PgcrewError('ROLE_NOT_FOUND', `role ${showValue(spec.params.user, 64)} does not exist at ${target}; create it or check the profile's user/admin`, { cause: error, details })
  }
  if (e.code === '53300') {
    return new PgcrewError('CONNECTION_FAILED', `the server at ${target} has no free connection slots (too many clients); lower pool sizes or threads`, { cause: error, details })
  }
  if (/timeout/i.test(message)) {
    return new PgcrewError('CONNECTION_FAILED', `timed out connecting to ${target}; check the host and your network, or raise connectionTimeoutMillis`, { cause: error, details })
  }
  return new PgcrewError('CONNECTION_FAILED', `cannot connect to ${target}: ${message}`, { cause: error, details })
}
