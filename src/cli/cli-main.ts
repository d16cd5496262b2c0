import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { closest } from '../errors/did-you-mean.ts'
import { maskConnectionString, maskSecretsInText } from '../connect/connection-string.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showText, showValue } from '../errors/show-value.ts'
import { UsageError, type CliIO, type Command, type ParseArgsOptionsConfig } from './cli-command.ts'
import { commands } from './cli-commands.ts'
import { inCliWords, printJson, println } from './cli-output.ts'

// Every command gets these two; a command's own table may not redefine them differently.
const COMMON: ParseArgsOptionsConfig = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }

const COMMON_HELP = `Common options:
  --json      one JSON document on stdout (errors too: {"error": {"code", "message"}})
  -h, --help  show this help`

/** The package version, read from package.json (found upward from here: src/cli/ or dist/src/cli/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'pgcrew' && pkg.version) return pkg.version
    }
    const parent = dirname(dir)
    if (parent === dir) return 'unknown'
    dir = parent
  }
}

async function loadCommand(name: string): Promise<Command | undefined> {
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined
  if (!load) return undefined
  const { command } = await load()
  if (command.name !== name) throw new Error(`src/cli/cli-commands.ts lists "${name}" but its module exports the command "${command.name}"`)
  return command
}

async function topLevelHelp(): Promise<string> {
  const loaded = await Promise.all(Object.keys(commands).map((n) => loadCommand(n)))
  const list = loaded.filter((c): c is Command => c !== undefined)
  const width = Math.max(...list.map((c) => c.name.length))
  return [
    'pgcrew — batch work against PostgreSQL from Node.js',
    '',
    'Usage: pgcrew <command> [options]',
    '',
    'Commands:',
    ...list.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'pgcrew <command> --help' for a command's options. Every command takes --help and --json.",
    'Exit status: 0 ok, 1 failure (explained on stderr), 2 bad usage. pgcrew --version prints the version.',
  ].join('\n')
}

function commandHelp(command: Command): string {
  return `Usage: ${command.usage.trimEnd()}\n\n${COMMON_HELP}`
}

/** Turn node:util parseArgs's errors into short usage messages. */
function usageFromParseArgs(error: unknown, options: ParseArgsOptionsConfig, args: string[]): UsageError {
  const e = error as { code?: string; message?: string }
  const message = String(e.message ?? error)
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'([^']+)'/.exec(message)?.[1] ?? message
    const guess = flag.startsWith('--') ? closest(flag.slice(2), Object.keys(options)) : undefined
    return new UsageError(`unknown option ${showText(maskConnectionString(flag))}${guess ? ` (did you mean --${guess}?)` : ''}`)
  }
  const missing = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(message)
  if (missing) return new UsageError(`option ${missing[1]} needs a value`)
  const ambiguous = /^Option '(?:-\w, )?(--[\w-]+)' argument is ambiguous/.exec(message)
  if (ambiguous) return ambiguousValue(ambiguous[1]!, options, args)
  const noArg = /^Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(message)
  if (noArg) return new UsageError(`option ${noArg[1]} does not take a value`)
  return new UsageError(message.charAt(0).toLowerCase() + message.slice(1))
}

/**
 * parseArgs refuses `--profile --json` as "ambiguous": the word after a flag that takes a value
 * starts with "-". Mostly the value was forgotten and the next word is another flag; say that, and
 * only otherwise how to pass a value that really starts with "-".
 */
function ambiguousValue(flag: string, options: ParseArgsOptionsConfig, args: string[]): UsageError {
  const name = flag.slice(2)
  const short = options[name]?.short
  const at = args.findIndex((a, i) => (a === flag || (short !== undefined && a === `-${short}`)) && args[i + 1]?.startsWith('-'))
  const next = at >= 0 ? args[at + 1]! : undefined
  const known = (word: string): boolean => (word.startsWith('--') ? Object.hasOwn(options, word.slice(2).split('=')[0]!) : Object.values(options).some((o) => o.short === word.slice(1, 2)))
  const nearly = (word: string): boolean => word.startsWith('--') && closest(word.slice(2), Object.keys(options)) !== undefined
  if (next === undefined || known(next) || nearly(next)) {
    const why = next === undefined ? '' : `, but the next word ${showText(next)} ${known(next) ? 'is' : 'looks like'} an option`
    return new UsageError(`option ${flag} needs a value${why}; write ${flag} VALUE`)
  }
  if (/^-\d/.test(next)) return new UsageError(`option ${flag} got a value starting with "-"; negative numbers are not allowed (a value that really starts with "-" is written ${flag}=-…)`)
  const shown = showText(maskConnectionString(next))
  return new UsageError(`option ${flag} needs a value, but the next word ${shown} starts with "-"; if that is the value, write ${flag}=${shown}`)
}

/**
 * Run `pgcrew` with `argv` (without node and the script) and return the exit code; never exits
 * the process itself. 0 ok, 1 an explained failure, 2 bad usage.
 *
 * @example process.exitCode = await main(process.argv.slice(2), { stdout, stderr, env, isTTY })
 */
export async function main(argv: string[], io: CliIO): Promise<number> {
  const state: { command?: string; json: boolean } = { json: argv.includes('--json') }
  try {
    return await dispatch(argv, io, state)
  } catch (error) {
    return report(error, io, state)
  }
}

async function dispatch(argv: string[], io: CliIO, state: { command?: string; json: boolean }): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    println(io.stdout, await topLevelHelp())
    return 0
  }
  if (first === '--version' || first === '-V') {
    const version = packageVersion()
    if (state.json) printJson(io, { version })
    else println(io.stdout, version)
    return 0
  }
  // `pgcrew help check` reads like `pgcrew check --help`.
  if (first === 'help') return dispatch([rest[0]!, '--help'], io, state)
  if (first.startsWith('-')) throw new UsageError(`unknown option ${first} (options go after the command)`)
  const command = await loadCommand(first)
  if (!command) {
    const guess = closest(first, Object.keys(commands))
    throw new UsageError(`unknown command ${showValue(maskConnectionString(first))}${guess ? ` (did you mean "${guess}"?)` : ''}`)
  }
  state.command = command.name
  const options = { ...command.options, ...COMMON }
  let parsed: { values: Record<string, unknown>; positionals: string[] }
  try {
    parsed = parseArgs({ args: rest, options, strict: true, allowPositionals: true })
  } catch (error) {
    throw usageFromParseArgs(error, options, rest)
  }
  state.json = parsed.values.json === true
  if (parsed.values.help) {
    println(io.stdout, commandHelp(command))
    return 0
  }
  return await command.run(parsed, io)
}

function report(error: unknown, io: CliIO, state: { command?: string; json: boolean }): number {
  const who = state.command ? `pgcrew ${state.command}` : 'pgcrew'
  // The last line of defence: whatever path built the message, no password in a URI gets printed.
  const safe = (text: string): string => inCliWords(maskSecretsInText(text))
  if (error instanceof UsageError || (error instanceof PgcrewError && USAGE_CODES.has(error.code))) {
    const message = safe(error.message)
    println(io.stderr, `${who}: ${message}`)
    println(io.stderr, `Run '${who} --help' for usage.`)
    if (state.json) printJson(io, { error: { code: error.code, message } })
    return 2
  }
  if (error instanceof PgcrewError) {
    const message = safe(error.message)
    println(io.stderr, `pgcrew: ${message}`)
    if (state.json) printJson(io, { error: { code: error.code, message } })
    return 1
  }
  // Not an error pgcrew raised on purpose: a bug, so the stack is worth showing.
  const e = error instanceof Error ? error : new Error(String(error))
  println(io.stderr, `pgcrew: unexpected error (this is a bug in pgcrew; please report it with the lines below)`)
  println(io.stderr, safe(e.stack ?? e.message))
  if (state.json) printJson(io, { error: { code: 'INTERNAL', message: safe(e.message) } })
  return 1
}

/** Errors about what was typed (a malformed --url): bad usage, exit 2. */
const USAGE_CODES = new Set(['INVALID_CONNECTION_STRING'])

export { closest } from '../errors/did-you-mean.ts'
