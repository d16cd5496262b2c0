import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import ini from 'ini'
import { closest } from '../errors/did-you-mean.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { INTEGER_SETTINGS, parseIntegerSetting } from './integer-setting.ts'
import { showValue } from '../errors/show-value.ts'

/** One named connection profile, merged from the profile files. */
export interface Profile {
  readonly name: string
  readonly host?: string
  readonly port?: number
  readonly dbname?: string
  /** The default role; `becomeUser()` target. */
  readonly user?: string
  /** The `becomeAdmin()` target. */
  readonly admin?: string
  /** Regex matched against this machine's whole FQDN. */
  readonly domain?: string
  /** Sessions as `user` are read-only unless this is false. Default true. */
  readonly readonly?: boolean
  readonly pooling?: 'pooled' | 'per-transaction'
  readonly sslmode?: string
  readonly application_name?: string
  readonly connect_timeout?: number
  readonly options?: string
  readonly search_path?: string
  readonly statement_timeout?: number
  /** A pg_service.conf service whose entries fill what this profile leaves unset. */
  readonly service?: string
  /** The socket directory the local-socket rule uses when `host` is this machine (default: libpq's). */
  readonly socket_dir?: string
  /** false: reach `host` over TCP even when it is this machine. Default true. */
  readonly local_socket?: boolean
  /** Non-enumerable: accepted only from a file with mode 0600. */
  readonly password?: string
  /** The files this profile's keys came from. */
  readonly files: readonly string[]
}

/** The keys a profile may hold, and how each is read. */
const KEYS: Record<string, 'string' | 'int' | 'bool' | 'pooling'> = {
  host: 'string',
  port: 'int',
  dbname: 'string',
  user: 'string',
  admin: 'string',
  domain: 'string',
  readonly: 'bool',
  pooling: 'pooling',
  password: 'string',
  sslmode: 'string',
  application_name: 'string',
  connect_timeout: 'int',
  options: 'string',
  search_path: 'string',
  statement_timeout: 'int',
  service: 'string',
  socket_dir: 'string',
  local_socket: 'bool',
}

/**
 * Keys people write out of libpq, psql or driver habit, and the profile key they mean: a closer
 * guess than edit distance gives (`database` is nearer to nothing, `hostaddr` to nothing useful).
 */
const HABITS: Record<string, string> = {
  database: 'dbname',
  db: 'dbname',
  username: 'user',
  role: 'user',
  hostname: 'host',
  hostaddr: 'host',
  server: 'host',
  passwd: 'password',
  pass: 'password',
  schema: 'search_path',
  searchpath: 'search_path',
  timeout: 'connect_timeout',
  appname: 'application_name',
  application: 'application_name',
  pool: 'pooling',
  read_only: 'readonly',
  socket: 'socket_dir',
  socketdir: 'socket_dir',
  unix_socket_directories: 'socket_dir',
  localsocket: 'local_socket',
  pgservice: 'service',
}

/** The known key a mistyped one most likely means, for "did you mean". */
function suggestKey(key: string): string | undefined {
  const lower = key.toLowerCase()
  if (KEYS[lower]) return lower
  return HABITS[lower] ?? closest(lower, Object.keys(KEYS))
}

/** Profiles in choice order (user file's sections first), with where they came from. */
export interface ProfileSet {
  readonly profiles: readonly Profile[]
  /** The files that were read. */
  readonly files: readonly string[]
  /** Every file looked for, read or not (what `pgcrew profiles which` lists). */
  readonly lookedIn: readonly string[]
  get(name: string): Profile | undefined
}

/**
 * The project a command runs in, as ESLint and Prettier find their config: the nearest directory
 * from `cwd` up that holds a package.json, else `cwd` itself.
 */
export function projectRoot(cwd = process.cwd()): string {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) return resolve(cwd)
  }
}

/**
 * The profile files pgcrew reads, later wins per key: the project's `config/profiles.ini` (at the
 * project root, so any subdirectory finds it), then the user's; `PGCREW_PROFILES` replaces both.
 */
export function profileFiles(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string[] {
  if (env.PGCREW_PROFILES) return [resolve(cwd, env.PGCREW_PROFILES)]
  const userDir = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config')
  return [join(projectRoot(cwd), 'config', 'profiles.ini'), join(userDir, 'pgcrew', 'profiles.ini')]
}

/** Expand `${VAR}` and `${VAR:-default}` from the environment; an unset `${VAR}` is an error. */
export function expandVariables(value: string, env: NodeJS.ProcessEnv, where: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
    const v = env[name]
    if (v !== undefined && v !== '') return v
    if (fallback !== undefined) return fallback
    throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: \${${name}} is ${v === undefined ? 'not set' : 'empty'} in the environment; set it or write \${${name}:-default}`)
  })
}

/** The line each section and each key of one file starts on: `lines.get(section)?.get(key)`. */
type LineIndex = Map<string, { line: number; keys: Map<string, number> }>

/**
 * Reject what the ini package would silently misread: dotted sections, keys outside sections, junk
 * lines, and a section or a key given twice in one file (ini merges those, later wins, so a stale
 * `port` left above a new one would quietly lose). ini keeps no line numbers, so this scan records
 * where each section and key is for the errors; it checks the line shapes, and leaves the reading
 * of values (quotes, inline comments) to ini.
 *
 * Returns the text to hand to ini, with comments after a `[section]` header removed: ini 6 does not
 * see `[local] ; note` as a header at all and would pour the keys under it into the previous profile.
 */
function scanLines(text: string, file: string): { text: string; index: LineIndex } {
  if (text.includes('\0')) throw new PgcrewError('PROFILE_FILE_INVALID', `${file} is not a text file (it holds NUL bytes); a profile file is INI text: [name] lines and key = value lines`)
  const index: LineIndex = new Map()
  let section: { line: number; keys: Map<string, number> } | undefined
  let sectionName = ''
  const lines = text.split(/\r?\n/)
  lines.forEach((raw, i) => {
    const line = raw.trim()
    const where = `${file}:${i + 1}`
    if (line === '' || line.startsWith(';') || line.startsWith('#')) return
    const header = /^\[([^\]]*)\]\s*([;#].*)?$/.exec(line)
    if (header) {
      sectionName = header[1]!.trim()
      if (sectionName.includes('.')) {
        throw new PgcrewError(
          'PROFILE_DOTTED_NAME',
          `${where}: profile name ${showValue(sectionName)} contains a dot, which the INI format reads as nesting; rename it (for example ${showValue(sectionName.replaceAll('.', '-'))})`,
        )
      }
      if (sectionName === '') throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: empty section name "[]"`)
      const first = index.get(sectionName)
      if (first)
        throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: profile ${showValue(sectionName)} appears twice in ${file} (lines ${first.line} and ${i + 1}); merge the two sections into one`)
      section = { line: i + 1, keys: new Map() }
      index.set(sectionName, section)
      lines[i] = `[${sectionName}]`
      return
    }
    if (line.startsWith('[')) throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: malformed section header ${showValue(line)}; write [name]`)
    if (!/^[A-Za-z_][\w-]*\s*=/.test(line)) {
      // Show only the first word: a mistyped line may be "password: secret".
      throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: expected "key = value" or "[profile]", found a line starting ${showValue(line.split(/[\s:=]/)[0]!.slice(0, 40))}`)
    }
    const key = line.split('=')[0]!.trim()
    if (section === undefined) {
      throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: ${showValue(key)} appears before any [profile] section; put it under one`)
    }
    const firstKey = section.keys.get(key)
    if (firstKey !== undefined) throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: profile ${showValue(sectionName)} sets ${showValue(key)} twice (lines ${firstKey} and ${i + 1}); keep one`)
    section.keys.set(key, i + 1)
  })
  return { text: lines.join('\n'), index }
}

function convert(key: string, value: unknown, where: string, section: string): unknown {
  const kind = KEYS[key]
  if (!kind) {
    const guess = suggestKey(key)
    throw new PgcrewError(
      'PROFILE_FILE_INVALID',
      `${where}: unknown key ${showValue(key)} in profile ${showValue(section)}${guess ? ` (did you mean "${guess}"?)` : ''}; known keys: ${Object.keys(KEYS).join(', ')}`,
    )
  }
  const text = typeof value === 'string' ? value.trim() : String(value)
  switch (kind) {
    case 'string':
      return text
    case 'int': {
      const { value: n, problem } = parseIntegerSetting(key as keyof typeof INTEGER_SETTINGS, text)
      if (problem !== undefined) throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: ${key} in profile ${showValue(section)} ${problem}`)
      return n
    }
    case 'bool': {
      const t = text.toLowerCase()
      if (['true', 'yes', 'on', '1'].includes(t)) return true
      if (['false', 'no', 'off', '0'].includes(t)) return false
      throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: ${key} in profile ${showValue(section)} must be true or false, not ${showValue(text)}`)
    }
    case 'pooling':
      if (text === 'pooled' || text === 'per-transaction') return text
      throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: pooling in profile ${showValue(section)} must be "pooled" or "per-transaction", not ${showValue(text)}`)
  }
}

function readProfileFile(file: string, env: NodeJS.ProcessEnv): Map<string, Record<string, unknown>> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new PgcrewError('PROFILE_FILE_INVALID', `cannot read profile file ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`, { cause: error })
  }
  const scanned = scanLines(text, file)
  const parsed = ini.parse(scanned.text) as Record<string, Record<string, unknown>>
  const secure = (statSync(file).mode & 0o077) === 0
  const out = new Map<string, Record<string, unknown>>()
  for (const [name, body] of Object.entries(parsed)) {
    const values: Record<string, unknown> = {}
    const lines = scanned.index.get(name)
    for (const [key, raw] of Object.entries(body)) {
      const line = lines?.keys.get(key) ?? lines?.line
      const where = `${file}${line === undefined ? '' : `:${line}`}`
      if (key === 'password' && !secure) {
        throw new PgcrewError(
          'PROFILE_PASSWORD_INSECURE',
          `${file} holds a password for profile "${name}" but can be read by others (mode ${(statSync(file).mode & 0o777).toString(8)}); run chmod 600 ${file}, or move the password to ~/.pgpass`,
        )
      }
      values[key] = convert(key, typeof raw === 'string' ? expandVariables(raw, env, `${where}: [${name}] ${key}`) : raw, where, name)
    }
    out.set(name, values)
  }
  return out
}

function makeProfile(name: string, values: Record<string, unknown>, files: string[]): Profile {
  const where = `profile ${showValue(name)} (${files.join(', ')})`
  const socketDir = values.socket_dir as string | undefined
  if (socketDir !== undefined && !socketDir.startsWith('/')) {
    throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: socket_dir must be an absolute directory (like /var/run/postgresql), not ${showValue(socketDir)}`)
  }
  if (socketDir !== undefined && values.local_socket === false) {
    throw new PgcrewError('PROFILE_FILE_INVALID', `${where}: socket_dir is never used with local_socket = false (the profile's host is then always reached over TCP); remove one of them`)
  }
  const { password, ...rest } = values
  const profile = { name, ...rest, files: Object.freeze(files) }
  if (password !== undefined) Object.defineProperty(profile, 'password', { value: password, enumerable: false })
  return Object.freeze(profile) as Profile
}

/**
 * Read and merge the profile files (missing files are fine). Later files win per key; in choice
 * order the user file's sections come first, then the project's.
 *
 * @example loadProfiles().profiles.map((p) => p.name)
 */
export function loadProfiles(options: { files?: string[]; env?: NodeJS.ProcessEnv; cwd?: string } = {}): ProfileSet {
  const env = options.env ?? process.env
  const files = options.files ?? profileFiles(env, options.cwd)
  const explicit = options.files !== undefined || Boolean(env.PGCREW_PROFILES)
  const merged = new Map<string, { values: Record<string, unknown>; files: string[] }>()
  const order: string[][] = []
  for (const file of files) {
    if (!existsSync(file)) {
      if (explicit) throw new PgcrewError('PROFILE_FILE_INVALID', `profile file ${file} does not exist; check PGCREW_PROFILES`)
      continue
    }
    const sections = readProfileFile(file, env)
    order.push([...sections.keys()])
    for (const [name, values] of sections) {
      const entry = merged.get(name) ?? { values: {}, files: [] }
      Object.assign(entry.values, values)
      entry.files.push(file)
      merged.set(name, entry)
    }
  }
  const names = [...new Set(order.reverse().flat())]
  const profiles = names.map((n) => makeProfile(n, merged.get(n)!.values, merged.get(n)!.files))
  return Object.freeze({ profiles, files: files.filter((f) => existsSync(f)), lookedIn: Object.freeze([...files]), get: (name: string) => profiles.find((p) => p.name === name) })
}

/** This machine's fully qualified name: `PGCREW_HOSTNAME`, else `hostname -f`, else os.hostname(). */
export function machineFqdn(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PGCREW_HOSTNAME) return env.PGCREW_HOSTNAME
  // `hostname -f` may ask a resolver: once per process is enough.
  detectedFqdn ??= detectFqdn()
  return detectedFqdn
}

let detectedFqdn: string | undefined

function detectFqdn(): string {
  try {
    const fqdn = execFileSync('hostname', ['-f'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    if (fqdn) return fqdn
  } catch {
    // no hostname(1) or no resolver: the kernel's name is the best we have
  }
  return hostname()
}

/** Which profile was chosen, and why (what `pgcrew profiles which` prints). */
export interface ProfileChoice {
  profile: Profile
  reason: string
}

/**
 * Choose a profile: explicit name > `PGCREW_PROFILE` > first whose `domain` matches the whole FQDN >
 * `local` > a typed error listing what exists.
 */
export function chooseProfile(set: ProfileSet, name?: string, env: NodeJS.ProcessEnv = process.env): ProfileChoice {
  const known = set.profiles.map((p) => p.name).join(', ') || '(none)'
  const wanted = name ?? env.PGCREW_PROFILE
  if (wanted) {
    const profile = set.get(wanted)
    if (!profile) {
      const guess = closest(
        wanted,
        set.profiles.map((p) => p.name),
      )
      const from = name ? '' : ' (from PGCREW_PROFILE)'
      throw new PgcrewError(
        'PROFILE_NOT_FOUND',
        `no profile named ${showValue(wanted)}${from}${guess ? ` (did you mean "${guess}"?)` : ''} — known: ${known} (files: ${set.files.join(', ') || 'none found'})`,
        { details: { profile: wanted } },
      )
    }
    return { profile, reason: name ? 'named explicitly' : 'named by PGCREW_PROFILE' }
  }
  const fqdn = machineFqdn(env)
  for (const profile of set.profiles) {
    if (profile.domain === undefined) continue
    let re: RegExp
    try {
      re = new RegExp(`^(?:${profile.domain})$`)
    } catch (error) {
      throw new PgcrewError('PROFILE_FILE_INVALID', `profile ${showValue(profile.name)}: domain ${showValue(profile.domain)} is not a valid regular expression`, { cause: error })
    }
    if (re.test(fqdn)) return { profile, reason: `domain /${profile.domain}/ matches this host ${fqdn}` }
  }
  const local = set.get('local')
  if (local) return { profile: local, reason: `no domain matches ${fqdn}; using "local"` }
  throw new PgcrewError('NO_PROFILE_MATCHES', `no profile matches host ${fqdn} — known: ${known}; set PGCREW_PROFILE, pass --profile, or add a [local] profile`, { details: { host: fqdn } })
}
