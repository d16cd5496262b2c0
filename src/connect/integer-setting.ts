// Integer settings read from text as libpq reads them (profiles, PG* variables, connection strings).
import { showValue } from '../errors/show-value.ts'

/** setTimeout's limit, the ceiling of every …Millis value. */
const MAX_TIMER_MILLIS = 2_147_483_647

/** The integer settings read from text (profiles, PG* variables, connection strings) and their ranges. */
export const INTEGER_SETTINGS = {
  port: { min: 1, max: 65535 },
  connect_timeout: { min: 0, max: Math.floor(MAX_TIMER_MILLIS / 1000) },
  statement_timeout: { min: 0, max: MAX_TIMER_MILLIS },
} as const

/**
 * Read an integer setting from text as libpq's parse_int_param does (psql is the reference):
 * surrounding whitespace and a sign are allowed (strtol), anything else is refused — `0x1538`,
 * `5e3`, `12abc`, `1.5` and `''` are not numbers to libpq, though JavaScript's Number() reads them.
 * psql says `invalid integer value "0x1538" for connection option "port"`. Then the range: libpq
 * refuses port 0 and 65536 (`invalid port number: "0"`). Returns the number, or why not as a phrase
 * ("must be …") the caller puts after the value's name and source (`PGPORT must be …`).
 *
 * @example parseIntegerSetting('port', ' 5433 ') // { value: 5433 }
 */
export function parseIntegerSetting(name: keyof typeof INTEGER_SETTINGS, text: string): { value: number; problem?: undefined } | { value?: undefined; problem: string } {
  const { min, max } = INTEGER_SETTINGS[name]
  // libpq's isspace(): space, \t, \n, \v, \f, \r (not JavaScript's wider \s).
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)[ \t\n\v\f\r]*$/.exec(text)
  if (!m) return { problem: `must be a whole number (decimal digits only), not ${showValue(text)}` }
  const value = Number(m[1])
  if (value < min || value > max) return { problem: `must be from ${min} to ${max}, not ${showValue(m[1]!)}` }
  // -0 reads as 0.
  return { value: value + 0 }
}
