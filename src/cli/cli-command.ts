import type { ParseArgsConfig } from 'node:util'
import { maskConnectionString } from '../connect/connection-string.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showValue } from '../errors/show-value.ts'

/** The `options` table of `node:util` parseArgs. */
export type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>

/** Where a command reads and writes; the entry passes the process's, tests pass captured streams. */
export interface CliIO {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** Where a command asks for confirmation (`pgcrew reset`); only a terminal is asked. */
  stdin?: NodeJS.ReadableStream
  env: NodeJS.ProcessEnv
  /** Whether stdout is a terminal (progress bars, colour). */
  isTTY: boolean
  /** Aborted on SIGINT/SIGTERM; long-running commands stop cleanly when it fires. */
  signal?: AbortSignal
}

/**
 * One `pgcrew` subcommand. `--help` and `--json` are added to every command's options by `main`;
 * `run` returns the exit code (0 ok, 1 explained failure) and throws `UsageError` for bad usage (2)
 * and a `PgcrewError` for an expected failure (1, message without a stack).
 */
export interface Command {
  name: string
  /** One line for `pgcrew --help`. */
  summary: string
  /** The help text after `Usage: `: the synopsis line, then a blank line and the options explained. */
  usage: string
  options: ParseArgsOptionsConfig
  run(parsed: { values: Record<string, unknown>; positionals: string[] }, io: CliIO): Promise<number>
}

/** Bad usage (missing or extra argument, bad flag value): exit 2 with a hint to run --help. */
export class UsageError extends PgcrewError {
  constructor(message: string) {
    super('USAGE', message)
    this.name = 'UsageError'
  }
}

/** Commands take at most `max` positionals; say which ones are extra. */
export function expectPositionals(positionals: string[], max: number, what: string): void {
  // An extra argument is often a connection string given without --url: never echo its password.
  if (positionals.length > max)
    throw new UsageError(
      `unexpected argument${positionals.length - max > 1 ? 's' : ''} ${positionals
        .slice(max)
        .map((p) => showValue(maskConnectionString(p)))
        .join(' ')} (${what})`,
    )
}
