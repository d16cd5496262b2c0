// Checks of the small values the store's own records take (ids, times, severities).
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { SEVERITIES, type Severity } from './store-schema.ts'

/** A time: a Date, or a string PostgreSQL reads as timestamptz ('2026-01-02T03:04:05Z'). */
export type TimeInput = Date | string

export function checkTime(value: TimeInput | undefined, what: string): Date | string | undefined {
  if (value === undefined) return undefined
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value
  if (typeof value === 'string' && value !== '') return value
  throw new PgcrewError('INVALID_OPTION', `${what} takes a Date or a time string, not ${value instanceof Date ? 'an invalid Date' : (JSON.stringify(value) ?? typeof value)}`)
}

export function checkId(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value
  if (typeof value === 'string' && /^[1-9]\d{0,15}$/.test(value)) return Number(value)
  throw new PgcrewError('INVALID_OPTION', `${what} takes an id (a whole number ≥ 1), not ${JSON.stringify(value) ?? typeof value}`)
}

export function checkSeverity(value: unknown, what: string): Severity {
  if (typeof value === 'string' && (SEVERITIES as readonly string[]).includes(value)) return value as Severity
  throw new PgcrewError('INVALID_OPTION', `${what} is one of ${SEVERITIES.join(', ')}, not ${JSON.stringify(value) ?? typeof value}`)
}
