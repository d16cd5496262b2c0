import { PgcrewError } from './pgcrew-error.ts'
import { SQLSTATES, SQLSTATE_CLASSES } from './sqlstate.ts'

/** The fields a PostgreSQL ErrorResponse carries, as node-postgres names them. */
export interface ServerErrorFields {
  readonly severity?: string | undefined
  readonly detail?: string | undefined
  readonly hint?: string | undefined
  readonly position?: string | undefined
  readonly internalPosition?: string | undefined
  readonly internalQuery?: string | undefined
  readonly where?: string | undefined
  readonly schema?: string | undefined
  readonly table?: string | undefined
  readonly column?: string | undefined
  readonly dataType?: string | undefined
  readonly constraint?: string | undefined
  readonly file?: string | undefined
  readonly line?: string | undefined
  readonly routine?: string | undefined
}

const FIELD_NAMES = [
  'severity',
  'detail',
  'hint',
  'position',
  'internalPosition',
  'internalQuery',
  'where',
  'schema',
  'table',
  'column',
  'dataType',
  'constraint',
  'file',
  'line',
  'routine',
] as const satisfies readonly (keyof ServerErrorFields)[]

// Retrying the whole unit of work on a fresh transaction can succeed for these, a few times.
const TRANSIENT = new Set([
  '40001',
  '40P01', // serialization_failure, deadlock_detected
  '55P03', // lock_not_available (NOWAIT, lock_timeout)
])

// The server is gone, unreachable or full: retrying can succeed once it is back, so these are retried
// for a time window rather than a number of times. 08007 (transaction_resolution_unknown) is left out
// on purpose: the work may have committed, so a blind retry could apply it twice. 08P01 is a protocol
// violation (a bug), not an outage.
const CONNECTION_LOST = new Set([
  '53300', // too_many_connections
  '57P01',
  '57P02',
  '57P03',
  '57P05', // admin/crash shutdown, cannot_connect_now, idle_session_timeout
])

/** True when a SQLSTATE says the connection was lost or could not be made (retried for a time window). */
export function isConnectionLostSqlstate(sqlstate: string): boolean {
  if (CONNECTION_LOST.has(sqlstate)) return true
  return sqlstate.startsWith('08') && sqlstate !== '08007' && sqlstate !== '08P01'
}

/** True when a SQLSTATE means "try the whole unit of work again" may succeed. */
export function isTransientSqlstate(sqlstate: string): boolean {
  return TRANSIENT.has(sqlstate) || isConnectionLostSqlstate(sqlstate)
}

/**
 * An error the PostgreSQL server reported. `code` is the SQLSTATE (`'23505'`), `conditionName` its
 * PL/pgSQL name (`'unique_violation'`); the server's fields (detail, hint, constraint, table, column,
 * position…) are kept, and `cause` is node-postgres' original error.
 *
 * @example
 * try { await db.query('insert into users(email) values ($1)', [email]) }
 * catch (e) { if (e instanceof UniqueViolation) console.log(e.constraint) else throw e }
 */
export class DatabaseError extends PgcrewError implements ServerErrorFields {
  /** The five-character SQLSTATE (same as `code`). */
  readonly sqlstate: string
  /** The condition name from errcodes.txt (`unique_violation`), undefined for a code PostgreSQL does not define. */
  readonly conditionName: string | undefined
  /** The SQLSTATE class description (`Integrity Constraint Violation`). */
  readonly className: string | undefined
  /** Whether retrying the whole unit of work (new transaction, maybe new connection) may succeed. */
  readonly transient: boolean
  /** Whether the session was lost or could not be made (server gone, restarting, full): see {@link isConnectionLost}. */
  readonly connectionLost: boolean
  declare readonly severity: string | undefined
  declare readonly detail: string | undefined
  declare readonly hint: string | undefined
  declare readonly position: string | undefined
  declare readonly internalPosition: string | undefined
  declare readonly internalQuery: string | undefined
  declare readonly where: string | undefined
  declare readonly schema: string | undefined
  declare readonly table: string | undefined
  declare readonly column: string | undefined
  declare readonly dataType: string | undefined
  declare readonly constraint: string | undefined
  declare readonly file: string | undefined
  declare readonly line: string | undefined
  declare readonly routine: string | undefined

  constructor(sqlstate: string, message: string, fields: ServerErrorFields = {}, options: { cause?: unknown } = {}) {
    const facts: Record<string, unknown> = { sqlstate }
    for (const key of FIELD_NAMES) if (fields[key] !== undefined) facts[key] = fields[key]
    super(sqlstate, message, { cause: options.cause, details: facts })
    this.name = new.target.name
    this.sqlstate = sqlstate
    this.conditionName = SQLSTATES[sqlstate]?.name
    this.className = SQLSTATE_CLASSES[sqlstate.slice(0, 2)]
    this.connectionLost = isConnectionLostSqlstate(sqlstate)
    this.transient = this.connectionLost || TRANSIENT.has(sqlstate)
    for (const key of FIELD_NAMES) (this as Record<string, unknown>)[key] = fields[key]
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), conditionName: this.conditionName, transient: this.transient, connectionLost: this.connectionLost }
  }
}

type DatabaseErrorClass = new (sqlstate: string, message: string, fields?: ServerErrorFields, options?: { cause?: unknown }) => DatabaseError

// Class-level errors: chosen when no exact subclass exists for a code in that class.
/** SQLSTATE class 08. */ export class ConnectionException extends DatabaseError {}
/** SQLSTATE class 0A. */ export class FeatureNotSupported extends DatabaseError {}
/** SQLSTATE class 21. */ export class CardinalityViolation extends DatabaseError {}
/** SQLSTATE class 22. */ export class DataException extends DatabaseError {}
/** SQLSTATE class 23. */ export class IntegrityConstraintViolation extends DatabaseError {}
/** SQLSTATE class 25. */ export class InvalidTransactionState extends DatabaseError {}
/** SQLSTATE class 26. */ export class InvalidSqlStatementName extends DatabaseError {}
/** SQLSTATE class 28. */ export class InvalidAuthorizationSpecification extends DatabaseError {}
/** SQLSTATE class 2B. */ export class DependentPrivilegeDescriptorsStillExist extends DatabaseError {}
/** SQLSTATE class 34. */ export class InvalidCursorName extends DatabaseError {}
/** SQLSTATE class 3D. */ export class InvalidCatalogName extends DatabaseError {}
/** SQLSTATE class 3F. */ export class InvalidSchemaName extends DatabaseError {}
/** SQLSTATE class 40. */ export class TransactionRollback extends DatabaseError {}
/** SQLSTATE class 42. */ export class SyntaxErrorOrAccessRuleViolation extends DatabaseError {}
/** SQLSTATE class 53. */ export class InsufficientResources extends DatabaseError {}
/** SQLSTATE class 54. */ export class ProgramLimitExceeded extends DatabaseError {}
/** SQLSTATE class 55. */ export class ObjectNotInPrerequisiteState extends DatabaseError {}
/** SQLSTATE class 57. */ export class OperatorIntervention extends DatabaseError {}
/** SQLSTATE class 58. */ export class SystemError extends DatabaseError {}
/** SQLSTATE class P0. */ export class PlpgsqlError extends DatabaseError {}
/** SQLSTATE class XX. */ export class InternalError extends DatabaseError {}

// Exact codes: each extends its class, so `instanceof IntegrityConstraintViolation` still works.
/** 23505 */ export class UniqueViolation extends IntegrityConstraintViolation {}
/** 23503 */ export class ForeignKeyViolation extends IntegrityConstraintViolation {}
/** 23502 */ export class NotNullViolation extends IntegrityConstraintViolation {}
/** 23514 */ export class CheckViolation extends IntegrityConstraintViolation {}
/** 23P01 */ export class ExclusionViolation extends IntegrityConstraintViolation {}
/** 23001 */ export class RestrictViolation extends IntegrityConstraintViolation {}
/** 22012 */ export class DivisionByZero extends DataException {}
/** 22003 */ export class NumericValueOutOfRange extends DataException {}
/** 22001 */ export class StringDataRightTruncation extends DataException {}
/** 22P02 */ export class InvalidTextRepresentation extends DataException {}
/** 22007 */ export class InvalidDatetimeFormat extends DataException {}
/** 22008 */ export class DatetimeFieldOverflow extends DataException {}
/** 22023 */ export class InvalidParameterValue extends DataException {}
/** 25001 */ export class ActiveSqlTransaction extends InvalidTransactionState {}
/** 25P01 */ export class NoActiveSqlTransaction extends InvalidTransactionState {}
/** 25P02: an earlier statement failed; only ROLLBACK (TO SAVEPOINT) is accepted until the transaction ends. */
export class InFailedSqlTransaction extends InvalidTransactionState {}
/** 25006 */ export class ReadOnlySqlTransaction extends InvalidTransactionState {}
/** 25P03 */ export class IdleInTransactionSessionTimeout extends InvalidTransactionState {}
/** 28P01 */ export class InvalidPassword extends InvalidAuthorizationSpecification {}
/** 40001 */ export class SerializationFailure extends TransactionRollback {}
/** 40P01 */ export class DeadlockDetected extends TransactionRollback {}
/** 42601. Not named `SyntaxError`, which would shadow JavaScript's global in every importing module. */
export class SqlSyntaxError extends SyntaxErrorOrAccessRuleViolation {}
/** 42501 */ export class InsufficientPrivilege extends SyntaxErrorOrAccessRuleViolation {}
/** 42P01 */ export class UndefinedTable extends SyntaxErrorOrAccessRuleViolation {}
/** 42703 */ export class UndefinedColumn extends SyntaxErrorOrAccessRuleViolation {}
/** 42883 */ export class UndefinedFunction extends SyntaxErrorOrAccessRuleViolation {}
/** 42704 (also: unrecognized configuration parameter) */ export class UndefinedObject extends SyntaxErrorOrAccessRuleViolation {}
/** 42P07 */ export class DuplicateTable extends SyntaxErrorOrAccessRuleViolation {}
/** 42710 */ export class DuplicateObject extends SyntaxErrorOrAccessRuleViolation {}
/** 42P04 */ export class DuplicateDatabase extends SyntaxErrorOrAccessRuleViolation {}
/** 42804 */ export class DatatypeMismatch extends SyntaxErrorOrAccessRuleViolation {}
/** 53300 */ export class TooManyConnections extends InsufficientResources {}
/** 53100 */ export class DiskFull extends InsufficientResources {}
/** 53200 */ export class OutOfMemory extends InsufficientResources {}
/** 55P03 */ export class LockNotAvailable extends ObjectNotInPrerequisiteState {}
/** 55006 */ export class ObjectInUse extends ObjectNotInPrerequisiteState {}
/** 55P02 */ export class CantChangeRuntimeParam extends ObjectNotInPrerequisiteState {}
/** 57014: cancelled by pg_cancel_backend or statement_timeout. */
export class QueryCanceled extends OperatorIntervention {}
/** 57P01: pg_terminate_backend or a server shutdown ended this session (also exported as BackendTerminated). */
export class AdminShutdown extends OperatorIntervention {}
/** 57P02 */ export class CrashShutdown extends OperatorIntervention {}
/** 57P03: the server is starting up or shutting down. */
export class CannotConnectNow extends OperatorIntervention {}
/** P0001: RAISE EXCEPTION in PL/pgSQL. */
export class RaiseException extends PlpgsqlError {}
export { AdminShutdown as BackendTerminated, ReadOnlySqlTransaction as ReadOnlyTransaction }

const BY_CODE: Readonly<Record<string, DatabaseErrorClass>> = {
  '23505': UniqueViolation,
  '23503': ForeignKeyViolation,
  '23502': NotNullViolation,
  '23514': CheckViolation,
  '23P01': ExclusionViolation,
  '23001': RestrictViolation,
  '22012': DivisionByZero,
  '22003': NumericValueOutOfRange,
  '22001': StringDataRightTruncation,
  '22P02': InvalidTextRepresentation,
  '22007': InvalidDatetimeFormat,
  '22008': DatetimeFieldOverflow,
  '22023': InvalidParameterValue,
  '25001': ActiveSqlTransaction,
  '25P01': NoActiveSqlTransaction,
  '25P02': InFailedSqlTransaction,
  '25006': ReadOnlySqlTransaction,
  '25P03': IdleInTransactionSessionTimeout,
  '28P01': InvalidPassword,
  '40001': SerializationFailure,
  '40P01': DeadlockDetected,
  '42601': SqlSyntaxError,
  '42501': InsufficientPrivilege,
  '42P01': UndefinedTable,
  '42703': UndefinedColumn,
  '42883': UndefinedFunction,
  '42704': UndefinedObject,
  '42P07': DuplicateTable,
  '42710': DuplicateObject,
  '42P04': DuplicateDatabase,
  '42804': DatatypeMismatch,
  '53300': TooManyConnections,
  '53100': DiskFull,
  '53200': OutOfMemory,
  '55P03': LockNotAvailable,
  '55006': ObjectInUse,
  '55P02': CantChangeRuntimeParam,
  '57014': QueryCanceled,
  '57P01': AdminShutdown,
  '57P02': CrashShutdown,
  '57P03': CannotConnectNow,
  P0001: RaiseException,
}

const BY_CLASS: Readonly<Record<string, DatabaseErrorClass>> = {
  '08': ConnectionException,
  '0A': FeatureNotSupported,
  '21': CardinalityViolation,
  '22': DataException,
  '23': IntegrityConstraintViolation,
  '25': InvalidTransactionState,
  '26': InvalidSqlStatementName,
  '28': InvalidAuthorizationSpecification,
  '2B': DependentPrivilegeDescriptorsStillExist,
  '34': InvalidCursorName,
  '3D': InvalidCatalogName,
  '3F': InvalidSchemaName,
  '40': TransactionRollback,
  '42': SyntaxErrorOrAccessRuleViolation,
  '53': InsufficientResources,
  '54': ProgramLimitExceeded,
  '55': ObjectNotInPrerequisiteState,
  '57': OperatorIntervention,
  '58': SystemError,
  P0: PlpgsqlError,
  XX: InternalError,
}

/** The error class `mapDatabaseError` would choose for a SQLSTATE: exact code, then class, then DatabaseError. */
export function errorClassFor(sqlstate: string): DatabaseErrorClass {
  return BY_CODE[sqlstate] ?? BY_CLASS[sqlstate.slice(0, 2)] ?? DatabaseError
}

/**
 * True for an error the PostgreSQL server sent (node-postgres' DatabaseError, from any copy of pg):
 * a five-character SQLSTATE plus a severity. Socket errors (`EPIPE` is five characters too) have no severity.
 */
export function isServerError(error: unknown): error is Error & ServerErrorFields & { code: string } {
  if (!(error instanceof Error)) return false
  const e = error as Error & { code?: unknown; severity?: unknown }
  return typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string'
}

/**
 * Turns a server error into the typed DatabaseError for its SQLSTATE; anything else (socket errors,
 * pgcrew's own errors, already mapped errors) is returned unchanged, so calling it twice is harmless.
 *
 * @example
 * try { await client.query(text, values) } catch (e) { throw mapDatabaseError(e) }
 */
export function mapDatabaseError(error: unknown): unknown {
  if (error instanceof DatabaseError || !isServerError(error)) return error
  const Class = errorClassFor(error.code)
  return new Class(error.code, error.message, error, { cause: error })
}

// Socket errors that mean the peer went away or cannot be reached now (not "never": ENOTFOUND is left out).
const LOST_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENETRESET', 'EAI_AGAIN'])

// node-postgres raises these as plain `new Error(message)` with no code (pg/lib/client.js: the socket
// ended, a query on a client whose socket failed; pg-pool/index.js: a connect that timed out). There is
// no other signal to go by, so they are matched exactly, and only on a plain Error without a code.
const PG_CONNECTION_MESSAGES = new Set(['Connection terminated unexpectedly', 'Client has encountered a connection error and is not queryable', 'Connection terminated due to connection timeout'])

// pgcrew's own wrappers of a failed connect (connectError): the cause says whether it was an outage.
const CONNECT_FAILURE_CODES = new Set(['CONNECTION_REFUSED', 'CONNECTION_FAILED'])

/**
 * True when the connection was lost or could not be made because the server is gone, restarting,
 * unreachable or full: a terminated session (57P01…), SQLSTATE class 08, too many clients (53300), a
 * dropped or refused socket, or node-postgres' code-less "Connection terminated unexpectedly" and
 * "…not queryable". Such work is retried for a time window, not a number of times.
 */
export function isConnectionLost(error: unknown, depth = 0): boolean {
  if (error === null || typeof error !== 'object' || depth > 4) return false
  const e = error as { code?: unknown; syscall?: unknown; message?: unknown; cause?: unknown; connectionLost?: unknown }
  // pgcrew's own errors that already know (DatabaseError, a TaskError from a worker thread).
  if (typeof e.connectionLost === 'boolean') return e.connectionLost
  if (isServerError(error)) return isConnectionLostSqlstate(error.code)
  if (typeof e.code === 'string') {
    if (LOST_SOCKET_CODES.has(e.code)) return true
    // A unix socket whose file is gone: the server is stopped (or restarting).
    if (e.code === 'ENOENT' && e.syscall === 'connect') return true
    if (error instanceof PgcrewError && CONNECT_FAILURE_CODES.has(e.code)) return isConnectionLost(e.cause, depth + 1)
    return false
  }
  return Object.getPrototypeOf(error) === Error.prototype && typeof e.message === 'string' && PG_CONNECTION_MESSAGES.has(e.message)
}

/**
 * True when retrying the whole unit of work may succeed: a transient SQLSTATE (serialization failure,
 * deadlock, lock timeout) or a lost connection ({@link isConnectionLost}).
 */
export function isTransientError(error: unknown): boolean {
  if (isConnectionLost(error)) return true
  const mapped = mapDatabaseError(error)
  return mapped instanceof DatabaseError && mapped.transient
}
