import { DBVERSION_PATTERN } from '../connect/connect-options.ts'
import { showValue } from '../errors/show-value.ts'
import { UsageError, type ParseArgsOptionsConfig } from './cli-command.ts'

/** The flags that say where and as whom a command connects; `check`, `run` … share them. */
export const CONNECTION_FLAGS = {
  profile: { type: 'string' },
  url: { type: 'string' },
  as: { type: 'string' },
  dbversion: { type: 'string' },
} as const satisfies ParseArgsOptionsConfig

/** What each flag does, a line per entry, for `--help`. */
const HELP = {
  url: ['URL', "connect to a postgres:// or pq:// string (overrides the profile's settings;", 'its password is used but never shown)'],
  as: ['WHO', "admin: the profile's admin role; user: its user role (read-only sessions", 'unless the profile says readonly = false); any other name: that role'],
  dbversion: ['V', 'connect to <dbname>_<V>'],
} as const

/** A connection flag's lines of `--help`, its text starting at `column` (as the command's other flags do). */
export function connectionFlagHelp(flag: keyof typeof HELP, column: number): string {
  const [arg, ...lines] = HELP[flag]
  return lines.map((line, i) => (i === 0 ? `  --${flag} ${arg}`.padEnd(column) : ' '.repeat(column)) + line).join('\n')
}

/** What the connection flags asked for, checked. */
export interface ConnectionFlags {
  profile?: string
  url?: string
  as?: string
  dbversion?: string
}

/** Read and check the connection flags of a parsed command line (bad values are usage errors, exit 2). */
export function connectionFlags(values: Record<string, unknown>): ConnectionFlags {
  const flags: ConnectionFlags = {
    profile: values.profile as string | undefined,
    url: values.url as string | undefined,
    as: values.as as string | undefined,
    dbversion: values.dbversion as string | undefined,
  }
  for (const [name, v] of Object.entries(flags)) if (v === '') throw new UsageError(`--${name} needs a non-empty value`)
  if (flags.dbversion !== undefined && !DBVERSION_PATTERN.test(flags.dbversion)) throw new UsageError(`--dbversion ${showValue(flags.dbversion)} may hold only letters, digits, _ . and -`)
  return flags
}
