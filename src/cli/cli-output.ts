// Output for people first: short aligned tables and key/value blocks; --json writes one document.
import type { CliIO } from './cli-command.ts'

/** Write text followed by a newline. */
export function println(stream: NodeJS.WritableStream, text = ''): void {
  stream.write(text + '\n')
}

/** Write one JSON document: pretty so it reads in a terminal too, or on one line for a stream reader. */
export function printJson(io: CliIO, value: unknown, options: { compact?: boolean } = {}): void {
  io.stdout.write(JSON.stringify(value, null, options.compact ? undefined : 2) + '\n')
}

/** Columns separated by two spaces, each as wide as its widest cell; headers in capitals. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n')
}

/** `key   value` lines with the values aligned; undefined values are left out. */
export function keyValues(pairs: Array<[string, string | undefined]>): string {
  const shown = pairs.filter((p): p is [string, string] => p[1] !== undefined)
  const width = Math.max(0, ...shown.map(([k]) => k.length))
  return shown.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join('\n')
}

/** A path with the home directory written as `~`, as people type it. */
export function tildify(path: string, env: NodeJS.ProcessEnv): string {
  const home = env.HOME
  if (home && home !== '/' && (path === home || path.startsWith(home + '/'))) return '~' + path.slice(home.length)
  return path
}

/** Quote for a POSIX shell only when needed, so the common case stays readable. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`
}

/**
 * The library's messages name API calls ("becomeAdmin('ROLE')"); a CLI user needs the flag that
 * does the same. One table here, so each message is written once, where it is raised.
 */
const CLI_WORDS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bbecomeAdmin\('ROLE'\)/g, '--as ROLE'],
  [/\b(?:db\.)?becomeAdmin\(\)/g, '--as admin'],
  [/\b(?:db\.)?becomeUser\(\)/g, '--as user'],
  [/\braise connectionTimeoutMillis\b/g, 'raise connect_timeout (seconds) in the profile'],
]

/** A library message in the CLI's words: `--as admin` where the library says `db.becomeAdmin()`. */
export function inCliWords(message: string): string {
  const words = CLI_WORDS.reduce((text, [api, cli]) => text.replace(api, cli), message)
  // "(pgcrew run … --as admin, or db.becomeAdmin())" names both ways; in the CLI they are one.
  return words.replace(/pgcrew run … (--as \w+), or \1\b/g, '$1')
}
