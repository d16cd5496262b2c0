import { existsSync, readFileSync, statSync, type Stats } from 'node:fs'
import { createRequire } from 'node:module'
import { PgcrewError } from '../errors/pgcrew-error.ts'

// The npm pgpass module gets the file name right, so that comes from it. Its line parser and
// matcher differ from libpq (see README "Passwords"), and its permission check writes its warning
// only to a real Stream and refuses every file while PGPASSWORD is set, so those are here.
const pgpassHelper = createRequire(import.meta.url)('pgpass/lib/helper.js') as {
  getFileName(env?: NodeJS.ProcessEnv): string
}

/** libpq's compiled-in socket directory on Debian-built libpq (DEFAULT_PGSOCKET_DIR). */
export const DEFAULT_SOCKET_DIR = '/var/run/postgresql'

/** One parsed line of a pgpass file. Fields are kept exactly as written (after unescaping). */
export interface PgpassEntry {
  host: string
  port: string
  database: string
  user: string
  /** Non-enumerable so an entry never prints its password. */
  readonly password: string
  line: number
  /** Which of host, port, database, user were a bare `*` (an escaped `\*` is a literal star). */
  wildcards: readonly [boolean, boolean, boolean, boolean]
}

/** What to look a password up for, as the connection will use it. */
export interface PgpassTarget {
  host: string
  port: number | string
  database: string
  user: string
}

/** A password found in a pgpass file, with where it came from (for libpq-style hints). */
export interface PgpassMatch {
  readonly password: string
  file: string
  line: number
}

/**
 * Split one pgpass line into fields with libpq's rules: `\` escapes the next character, an
 * unescaped `:` ends a field, and the password ends at the first unescaped `:` too (anything
 * after it is ignored). Returns undefined for comments, blank lines and lines with fewer than
 * five fields (libpq skips those silently).
 */
export function parsePgpassLine(raw: string, lineNo = 0): PgpassEntry | undefined {
  // libpq: a comment is a line whose very first byte is '#' (checked before stripping), and
  // pg_strip_crlf removes every trailing CR and LF.
  if (raw.startsWith('#')) return undefined
  const line = raw.replace(/[\r\n]+$/, '')
  if (line === '') return undefined
  const fields: string[] = ['']
  const rawFields: string[] = ['']
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === '\\' && i + 1 < line.length) {
      rawFields[rawFields.length - 1] += c + line[i + 1]
      fields[fields.length - 1] += line[++i]
    } else if (c === ':') {
      if (fields.length === 5) break
      fields.push('')
      rawFields.push('')
    } else {
      fields[fields.length - 1] += c
      rawFields[rawFields.length - 1] += c
    }
  }
  if (fields.length < 5) return undefined
  const [host, port, database, user, password] = fields as [string, string, string, string, string]
  const wildcards = rawFields.slice(0, 4).map((f) => f === '*') as [boolean, boolean, boolean, boolean]
  const entry = { host, port, database, user, line: lineNo, wildcards } as unknown as PgpassEntry
  Object.defineProperty(entry, 'password', { value: password, enumerable: false })
  return entry
}

/** libpq matches an empty host or its default socket directory against `localhost` lines. */
export function pgpassHostFor(host: string | undefined): string {
  return !host || host === DEFAULT_SOCKET_DIR ? 'localhost' : host
}

/** Does this entry match the target, compared exactly as libpq does (no trimming, no DNS). */
export function pgpassMatches(entry: PgpassEntry, target: PgpassTarget): boolean {
  const values = [pgpassHostFor(target.host), String(target.port), target.database, target.user]
  const patterns = [entry.host, entry.port, entry.database, entry.user]
  return patterns.every((p, i) => entry.wildcards[i] || p === values[i])
}

/** The pgpass file libpq would read: `PGPASSFILE`, else `~/.pgpass`. */
export function pgpassFileName(env: NodeJS.ProcessEnv = process.env): string {
  return pgpassHelper.getFileName(env)
}

/** libpq's rule for a pgpass file it skips (with a warning): not a plain file, or readable by others. */
function skipReason(stats: Stats): 'not a plain file' | 'too open' | undefined {
  if (!stats.isFile()) return 'not a plain file'
  if (process.platform !== 'win32' && (stats.mode & 0o077) !== 0) return 'too open'
  return undefined
}

/** Why libpq would skip this pgpass file, said as advice, or undefined when it would read it. */
export function pgpassIgnoredBecause(file: string): string | undefined {
  let stats: Stats
  try {
    stats = statSync(file)
  } catch {
    return undefined // missing: nothing to say
  }
  if (stats.isDirectory()) return undefined // an error of its own (PGPASS_UNREADABLE)
  const why = skipReason(stats)
  if (why === 'not a plain file') return 'it is not a plain file'
  if (why === 'too open') return `it has group or world access (run chmod 600 "${file}")`
  return undefined
}

const warned = new Set<string>()

/** Reset the one-warning-per-file memory (for tests). */
export function resetPgpassWarnings(): void {
  warned.clear()
}

/**
 * Read a pgpass file the way libpq does: missing → nothing; group- or world-accessible, or not a
 * plain file (a device such as /dev/null) → ignored with one warning per file, worded as libpq's.
 * A file that exists but cannot be read (a directory, no permission) is a typed error: libpq
 * silently ignores it, which hides a broken PGPASSFILE until authentication fails.
 */
export function readPgpassFile(file: string, warn: (message: string) => void = (m) => process.stderr.write(m + '\n')): PgpassEntry[] {
  if (!existsSync(file)) return []
  const unreadable = (why: string, cause?: unknown): PgcrewError =>
    new PgcrewError('PGPASS_UNREADABLE', `cannot read password file "${file}": ${why}; point PGPASSFILE at a readable file (chmod 600) or remove it`, { cause })
  let text: string
  try {
    const stats = statSync(file)
    if (stats.isDirectory()) throw unreadable('it is a directory')
    const why = skipReason(stats)
    const warning =
      why === 'not a plain file'
        ? `WARNING: password file "${file}" is not a plain file`
        : why === 'too open'
          ? `WARNING: password file "${file}" has group or world access; permissions should be u=rw (0600) or less`
          : undefined
    if (warning !== undefined) {
      if (!warned.has(file)) {
        warned.add(file)
        warn(`pgcrew: ${warning}`)
      }
      return []
    }
    text = readFileSync(file, 'utf8')
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw unreadable(String((error as NodeJS.ErrnoException).code ?? error), error)
  }
  const entries: PgpassEntry[] = []
  const malformed: number[] = []
  text.split('\n').forEach((raw, i) => {
    const entry = parsePgpassLine(raw, i + 1)
    if (entry) entries.push(entry)
    else if (!raw.startsWith('#') && raw.replace(/[\r\n]+$/, '') !== '') malformed.push(i + 1)
  })
  // libpq skips such lines silently, so pgcrew skips them too, but says so once (never echoing a
  // line: it may hold a password).
  if (malformed.length && !warned.has(`${file}#malformed`)) {
    warned.add(`${file}#malformed`)
    warn(
      `pgcrew: WARNING: password file "${file}": line${malformed.length > 1 ? 's' : ''} ${malformed.join(', ')} ${malformed.length > 1 ? 'have' : 'has'} fewer than 5 fields (host:port:dbname:user:password) and ${malformed.length > 1 ? 'are' : 'is'} ignored`,
    )
  }
  return entries
}

/**
 * Look a password up in the pgpass file: the first matching line wins.
 *
 * @example lookupPgpass({ host: 'db.example.org', port: 5432, database: 'app', user: 'me' })
 */
export function lookupPgpass(target: PgpassTarget, options: { file?: string; env?: NodeJS.ProcessEnv; warn?: (m: string) => void } = {}): PgpassMatch | undefined {
  const file = options.file ?? pgpassFileName(options.env)
  for (const entry of readPgpassFile(file, options.warn)) {
    if (pgpassMatches(entry, target)) {
      // libpq treats an empty password as none at all.
      if (entry.password === '') return undefined
      const match = { file, line: entry.line } as PgpassMatch
      Object.defineProperty(match, 'password', { value: entry.password, enumerable: false })
      return match
    }
  }
  return undefined
}
