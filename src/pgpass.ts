import { existsSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { PgcrewError } from './errors.ts'

// The npm pgpass module gets the file name and the permission rule right, so those come from it.
// Its line parser and matcher differ from libpq (see README "Passwords"), so those are here.
const pgpassHelper = createRequire(import.meta.url)('pgpass/lib/helper.js') as {
  getFileName(env?: NodeJS.ProcessEnv): string
  usePgPass(stats: { mode: number }, fname: string): boolean
  warnTo(stream: NodeJS.WritableStream): NodeJS.WritableStream
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
  const line = raw.replace(/\r?\n$/, '').replace(/\r$/, '')
  if (line === '' || line.startsWith('#')) return undefined
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

const warned = new Set<string>()

/** Reset the one-warning-per-file memory (for tests). */
export function resetPgpassWarnings(): void {
  warned.clear()
}

/**
 * Read a pgpass file the way libpq does: missing → nothing; not a plain file or readable by group
 * or others → ignored with one warning per file; unreadable → a typed error.
 */
export function readPgpassFile(file: string, warn: (message: string) => void = (m) => process.stderr.write(m + '\n')): PgpassEntry[] {
  if (!existsSync(file)) return []
  let text: string
  try {
    const stats = statSync(file)
    let warning = ''
    const previous = pgpassHelper.warnTo({ writable: true, write: (s: string) => ((warning += s), true) } as never)
    let usable: boolean
    try {
      // PGPASSWORD is handled before we get here; hide it so the helper only judges the file.
      const saved = process.env.PGPASSWORD
      delete process.env.PGPASSWORD
      try {
        usable = pgpassHelper.usePgPass(stats, file)
      } finally {
        if (saved !== undefined) process.env.PGPASSWORD = saved
      }
    } finally {
      pgpassHelper.warnTo(previous)
    }
    if (!usable) {
      if (!warned.has(file)) {
        warned.add(file)
        warn(`pgcrew: ${warning.trim() || `password file "${file}" ignored`}`)
      }
      return []
    }
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new PgcrewError('PGPASS_UNREADABLE', `cannot read password file "${file}": ${(error as NodeJS.ErrnoException).code ?? error}; fix its permissions (chmod 600) or set PGPASSFILE`, { cause: error })
  }
  const entries: PgpassEntry[] = []
  text.split('\n').forEach((raw, i) => {
    const entry = parsePgpassLine(raw, i + 1)
    if (entry) entries.push(entry)
  })
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
