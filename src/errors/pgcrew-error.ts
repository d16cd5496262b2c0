/**
 * The error base class for everything pgcrew throws on purpose.
 *
 * Every error carries a stable `code` (switch on it, never on the message) and, where it wraps
 * another error, `cause`. Messages say what happened and what to do next; they never contain a
 * password. The CLI prints `message` alone (no stack) for any `PgcrewError`.
 *
 * @example
 * try { await db.setProfile('nope') } catch (e) { if (e instanceof PgcrewError && e.code === 'PROFILE_NOT_FOUND') ... }
 */
export class PgcrewError extends Error {
  readonly code: PgcrewErrorCode
  /** Extra structured facts for programs (never secrets). */
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: PgcrewErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'PgcrewError'
    this.code = code
    this.details = Object.freeze({ ...(options.details ?? {}) })
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, ...this.details }
  }
}

/** The stable codes of errors raised by pgcrew itself (database errors use their SQLSTATE). */
export type PgcrewErrorCode =
  | 'PROFILE_NOT_FOUND'
  | 'NO_PROFILE_MATCHES'
  | 'PROFILE_DOTTED_NAME'
  | 'PROFILE_FILE_INVALID'
  | 'PROFILE_PASSWORD_INSECURE'
  | 'SERVICE_NOT_FOUND'
  | 'SERVICE_FILE_INVALID'
  | 'PGPASS_UNREADABLE'
  | 'PGPASS_MALFORMED'
  | 'INVALID_CONNECTION_STRING'
  | 'UNKNOWN_OPTION'
  | 'INVALID_OPTION'
  | 'CONNECTION_REFUSED'
  | 'AUTHENTICATION_FAILED'
  | 'DATABASE_NOT_FOUND'
  | 'ROLE_NOT_FOUND'
  | 'CONNECTION_FAILED'
  | 'ADMIN_NOT_CONFIGURED'
  | 'NOT_CONNECTED'
  | 'CLOSED'
  | 'TEMP_CLUSTER_FAILED'
  | 'NO_POSTGRES_BINARIES'
  | 'USAGE'
  | (string & {})

/** True for errors pgcrew raised on purpose (expected failures: print the message, not a stack). */
export function isPgcrewError(error: unknown): error is PgcrewError {
  return error instanceof PgcrewError
}
