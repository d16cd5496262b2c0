// libpq's key/value connection strings (`service=obs user=ann`), parsed as libpq's conninfo_parse
// does; psql on the same string is the reference. pg-connection-string reads only URIs.
import type { ParsedConnectionString } from './connection-string.ts'
import { applyKeyword, type KeywordSettings } from './libpq-keywords.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showText } from '../errors/show-value.ts'

/** libpq's isspace(). */
const SPACE = /[ \t\n\v\f\r]/

/** The string with the value after `password=` replaced by `***`, for messages (none of it when it does not parse). */
export function maskKeywordValueString(text: string): string {
  try {
    return tokens(text)
      .map(([key, , raw]) => `${key}=${key === 'password' ? '***' : raw}`)
      .join(' ')
  } catch {
    return '(a key/value string that does not parse)'
  }
}

function bad(text: string, why: string): PgcrewError {
  return new PgcrewError('INVALID_CONNECTION_STRING', `invalid connection string ${showText(maskKeywordValueString(text), 200)}: ${why}`)
}

/**
 * Split into [key, value, raw value] with libpq's rules: whitespace separates pairs and may stand
 * around `=`; a value is either bare (up to the next whitespace) or in single quotes, and in both a
 * backslash takes the next character literally. A malformed string throws libpq's own wording.
 */
function tokens(text: string): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = []
  let i = 0
  const skipSpace = (): void => {
    while (i < text.length && SPACE.test(text[i]!)) i++
  }
  for (;;) {
    skipSpace()
    if (i >= text.length) return out
    const start = i
    while (i < text.length && text[i] !== '=' && !SPACE.test(text[i]!)) i++
    const key = text.slice(start, i)
    skipSpace()
    if (text[i] !== '=') {
      throw new Error(`missing "=" after ${JSON.stringify(showText(key, 40))} in connection info string`)
    }
    i++
    skipSpace()
    const from = i
    let value = ''
    if (text[i] === "'") {
      i++
      for (;;) {
        if (i >= text.length) {
          throw new Error('unterminated quoted string in connection info string')
        }
        const c = text[i++]!
        if (c === '\\') {
          if (i < text.length) value += text[i++]
        } else if (c === "'") break
        else value += c
      }
    } else {
      while (i < text.length && !SPACE.test(text[i]!)) {
        const c = text[i++]!
        if (c === '\\') {
          if (i < text.length) value += text[i++]
        } else value += c
      }
    }
    out.push([key, value, text.slice(from, i)])
  }
}

/**
 * Parse `key=value ...` as libpq does. A key given twice keeps its last value (as libpq stores it).
 *
 * @example parseKeywordValueString("service=obs user='ann b'").settings // { service: 'obs', user: 'ann b' }
 */
export function parseKeywordValueString(text: string): ParsedConnectionString {
  const into: KeywordSettings = { settings: {} }
  let pairs: Array<[string, string, string]>
  try {
    pairs = tokens(text)
  } catch (error) {
    throw bad(text, (error as Error).message)
  }
  for (const [key, value] of pairs) {
    const problem = applyKeyword(into, key, value)
    if (problem !== undefined) throw bad(text, problem)
  }
  const result = { settings: into.settings, serverSettings: {} }
  if (into.password !== undefined) Object.defineProperty(result, 'password', { value: into.password, enumerable: false })
  return result as ParsedConnectionString
}
