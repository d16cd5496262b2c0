// libpq's connection service file (pg_service.conf), read as libpq 15 reads it; psql is the reference
// (test/connect/service-file.test.ts runs both on the same files). No npm package parses it, and the
// `ini` package's rules are not libpq's: ini trims around "=", takes ";" and inline "#" as comments
// and unquotes values, where libpq keeps `password=se;cret#1` whole and refuses `host = x`.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type { ConnectionSettings } from './connection-params.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { applyKeyword, isLibpqKeyword, type KeywordSettings } from './libpq-keywords.ts'
import { showValue } from '../errors/show-value.ts'

/** One service's entries, as a connection layer between the explicit settings and the PG* variables. */
export interface ServiceEntry {
  readonly name: string
  /** The file the service came from. */
  readonly file: string
  readonly settings: ConnectionSettings
  /** Non-enumerable. */
  readonly password?: string
}

/** The service files libpq reads, in order: the user's (PGSERVICEFILE or ~/.pg_service.conf), then the system's. */
export interface ServiceFiles {
  readonly user: string
  /** PGSERVICEFILE names the user file: then it must exist (psql: `service file "…" not found`). */
  readonly userFromEnv: boolean
  /** `<PGSYSCONFDIR>/pg_service.conf`, else in libpq's compiled-in sysconfdir (`pg_config --sysconfdir`). */
  readonly system?: string
}

let compiledSysconfdir: string | null | undefined

/** libpq's compiled-in sysconfdir, as `pg_config --sysconfdir` reports it (asked once per process). */
function sysconfdir(): string | undefined {
  if (compiledSysconfdir === undefined) {
    try {
      compiledSysconfdir = execFileSync('pg_config', ['--sysconfdir'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null
    } catch {
      // No pg_config: Debian's libpq (the one whose socket directory pgcrew assumes) uses this one.
      compiledSysconfdir = existsSync('/etc/postgresql-common') ? '/etc/postgresql-common' : null
    }
  }
  return compiledSysconfdir ?? undefined
}

/** The files libpq would look a service up in, for this environment. */
export function serviceFiles(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ServiceFiles {
  // libpq takes PGSERVICEFILE as it is (relative to the current directory); an empty one names no file.
  const userFromEnv = env.PGSERVICEFILE !== undefined
  const user = userFromEnv ? (env.PGSERVICEFILE === '' ? '' : resolve(cwd, env.PGSERVICEFILE!)) : join(env.HOME || homedir(), '.pg_service.conf')
  const dir = env.PGSYSCONFDIR !== undefined ? env.PGSYSCONFDIR : sysconfdir()
  return Object.freeze({ user, userFromEnv, system: dir === undefined ? undefined : resolve(cwd, dir, 'pg_service.conf') })
}

/**
 * A service file's text; undefined when there is no such file. A file that exists but cannot be read
 * is an error, as in libpq (it stats, then fails to open: `service file "…" not found`).
 */
function readServiceFile(file: string, mustExist: boolean, name: string): string | undefined {
  if (!mustExist && !existsSync(file)) return undefined
  try {
    // libpq reads a directory as an empty file.
    return statSync(file).isDirectory() ? '' : readFileSync(file, 'utf8')
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `cannot be read (${(error as NodeJS.ErrnoException).code ?? error})`
    const hint = mustExist ? '; fix or unset PGSERVICEFILE' : ''
    throw new PgcrewError('SERVICE_NOT_FOUND', `service file "${file}" ${why}, looking up service ${showValue(name)}${hint}`, { cause: error, details: { service: name, file } })
  }
}

interface Section {
  readonly name: string
  /** [key, value, line] in file order. */
  readonly lines: ReadonlyArray<readonly [string, string, number] | { readonly problem: string; readonly line: number }>
}

/**
 * The sections of one service file with libpq's line rules: each line trimmed of whitespace, blank
 * and `#` lines skipped (no `;` comments, no inline comments), `[name]` opens a section (libpq
 * compares the name with a prefix match, so `[obs] trailing` is `[obs]`), and in a section every
 * other line is `key=value` split at the first `=`, nothing trimmed around it. Lines outside any
 * section are never looked at by libpq, so neither are they here. Only the first section of a name
 * counts (libpq stops at the next header).
 */
function sections(text: string): Section[] {
  const out: Section[] = []
  let current: { name: string; lines: Section['lines'][number][] } | undefined
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '')
    if (line === '' || line.startsWith('#')) return
    if (line.startsWith('[')) {
      const end = line.indexOf(']')
      current = { name: end < 0 ? '\0' : line.slice(1, end), lines: [] }
      if (end >= 0 && !out.some((s) => s.name === current!.name)) out.push(current)
      return
    }
    if (!current) return
    const eq = line.indexOf('=')
    if (eq < 0) current.lines.push({ problem: 'it is not key=value', line: i + 1 })
    else current.lines.push([line.slice(0, eq), line.slice(eq + 1), i + 1])
  })
  return out
}

function invalid(file: string, line: number, why: string): PgcrewError {
  return new PgcrewError('SERVICE_FILE_INVALID', `syntax error in service file "${file}", line ${line}: ${why}`, { details: { file, line } })
}

/** A section's lines as connection settings; an error names the file and line, never a value (it may be a password). */
function entryOf(section: Section, file: string): ServiceEntry {
  const into: KeywordSettings = { settings: {} }
  const seen = new Set<string>()
  for (const item of section.lines) {
    if (!Array.isArray(item)) throw invalid(file, (item as { line: number }).line, `${(item as { problem: string }).problem}; write key=value`)
    const [key, value, line] = item as readonly [string, string, number]
    if (key === 'service') throw new PgcrewError('SERVICE_FILE_INVALID', `nested service specifications not supported in service file "${file}", line ${line}`, { details: { file, line } })
    if (/^[ \t]|[ \t]$/.test(key) && isLibpqKeyword(key.trim())) {
      throw invalid(file, line, `libpq reads the key as ${showValue(key)} (spaces around "=" are part of it) and refuses the line; write ${key.trim()}=value`)
    }
    if (key.startsWith('ldap:')) throw invalid(file, line, 'ldap:// lookups are not supported by pgcrew')
    // libpq keeps the first value of a key (it fills only what is still unset).
    if (seen.has(key)) continue
    seen.add(key)
    const problem = applyKeyword(into, key, value)
    if (problem !== undefined) {
      // A keyword libpq knows but refuses the value of (port=abc) or pgcrew cannot honour; else libpq's "syntax error".
      throw isLibpqKeyword(key) ? new PgcrewError('SERVICE_FILE_INVALID', `service file "${file}", line ${line}: ${problem}`, { details: { file, line } }) : invalid(file, line, problem)
    }
  }
  const entry = { name: section.name, file, settings: Object.freeze(into.settings) }
  if (into.password !== undefined) Object.defineProperty(entry, 'password', { value: into.password, enumerable: false })
  return Object.freeze(entry) as ServiceEntry
}

/** Where a missing service was looked for, as the error says it. */
function lookedIn(files: ServiceFiles): string {
  const system = files.system === undefined ? 'no system file (PGSYSCONFDIR is not set and pg_config was not found)' : files.system
  return `${files.user}${files.userFromEnv ? ' (PGSERVICEFILE)' : ''}, ${system}`
}

/**
 * Look a service up as libpq does: the user file first (a service found there is used whole, the
 * system file is not read), then the system file; a name in neither is an error naming both files.
 * `from` says where the name came from (`PGSERVICE`, a connection string, a profile).
 *
 * @example lookupService('obs', process.env).settings.host
 */
export function lookupService(name: string, env: NodeJS.ProcessEnv = process.env, from = 'service'): ServiceEntry {
  const files = serviceFiles(env)
  const user = readServiceFile(files.user, files.userFromEnv, name)
  const found = user === undefined ? undefined : sections(user).find((s) => s.name === name)
  if (found) return entryOf(found, files.user)
  const system = files.system === undefined ? undefined : readServiceFile(files.system, false, name)
  const inSystem = system === undefined ? undefined : sections(system).find((s) => s.name === name)
  if (inSystem) return entryOf(inSystem, files.system!)
  throw new PgcrewError('SERVICE_NOT_FOUND', `definition of service ${showValue(name)} not found (${from}); looked in ${lookedIn(files)}`, { details: { service: name, from } })
}

/** A service as `pgcrew profiles list` shows it: its entries, or what is wrong with it. */
export interface ServiceSummary {
  readonly name: string
  readonly file: string
  readonly entry?: ServiceEntry
  /** Why the service cannot be used (its section has a line libpq refuses). */
  readonly problem?: string
}

/** Every service the files define, the user file's first; a name in both is the user file's (as lookups go). */
export function listServices(env: NodeJS.ProcessEnv = process.env): ServiceSummary[] {
  const files = serviceFiles(env)
  const out: ServiceSummary[] = []
  for (const file of [files.user, files.system]) {
    let text: string | undefined
    try {
      text = file === undefined ? undefined : readServiceFile(file, false, '')
    } catch {
      // An unreadable file lists nothing; using one of its services says why.
    }
    if (file === undefined || text === undefined) continue
    for (const section of sections(text)) {
      if (out.some((s) => s.name === section.name)) continue
      try {
        out.push({ name: section.name, file, entry: entryOf(section, file) })
      } catch (error) {
        out.push({ name: section.name, file, problem: (error as Error).message })
      }
    }
  }
  return out
}
