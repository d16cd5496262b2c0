import type { ConnectionParams } from './connection-params.ts'
import { PgcrewError } from './errors.ts'
import { findPassword, type ClientSpec, type PasswordSource } from './pg-client.ts'

/** `user@host:port/dbname` — what libpq would name in its messages. */
export function describeTarget(params: ConnectionParams): string {
  const host = params.host.startsWith('/') ? `socket ${params.host}` : params.host
  return `${params.user}@${host}:${params.port}/${params.dbname}`
}

function passwordHint(source: PasswordSource): string {
  switch (source.kind) {
    case 'option':
      return 'the password came from the password option or connection string'
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
  const target = describeTarget(spec.params) + (profile ? ` (profile "${profile}")` : '')
  const details = { target: describeTarget(spec.params), profile, sqlstate: e.code }
  const message = String(e.message ?? error)
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' || e.code === 'EHOSTUNREACH' || e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
    return new PgcrewError('CONNECTION_REFUSED', `cannot connect to ${target}: ${e.code === 'ENOTFOUND' ? 'unknown host' : 'nothing is listening there'}; is the server running, and are host and port right?`, { cause: error, details })
  }
  if (e.code === '28P01' || /SASL|client password must be|password authentication/i.test(message)) {
    const { source } = findPassword(spec)
    return new PgcrewError('AUTHENTICATION_FAILED', `password authentication failed for role "${spec.params.user}" at ${target}; ${passwordHint(source)}`, { cause: error, details })
  }
  if (e.code === '3D000') {
    return new PgcrewError('DATABASE_NOT_FOUND', `database "${spec.params.dbname}" does not exist at ${target}; create it, or check dbname/dbversion`, { cause: error, details })
  }
  if (e.code === '28000' && /role .* does not exist/.test(message)) {
    return new PgcrewError('ROLE_NOT_FOUND', `role "${spec.params.user}" does not exist at ${target}; create it or check the profile's user/admin`, { cause: error, details })
  }
  if (e.code === '53300') {
    return new PgcrewError('CONNECTION_FAILED', `the server at ${target} has no free connection slots (too many clients); lower pool sizes or threads`, { cause: error, details })
  }
  if (/timeout/i.test(message)) {
    return new PgcrewError('CONNECTION_FAILED', `timed out connecting to ${target}; check the host and your network, or raise connectionTimeoutMillis`, { cause: error, details })
  }
  return new PgcrewError('CONNECTION_FAILED', `cannot connect to ${target}: ${message}`, { cause: error, details })
}
