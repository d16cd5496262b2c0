import type { Command } from './cli-command.ts'

/**
 * The `pgcrew` commands, in the order `pgcrew --help` lists them. Each module exports
 * `command: Command` whose `name` is its key here; modules load only when used, so a heavy
 * command (piscina, workers) never slows down `pgcrew profiles`.
 *
 * To add a command, add one line here.
 */
export const commands: Record<string, () => Promise<{ command: Command }>> = {
  profiles: () => import('./profiles-command.ts'),
  check: () => import('./check-command.ts'),
  initdb: () => import('./initdb-command.ts'),
  run: () => import('./run-command.ts'),
  status: () => import('./status-command.ts'),
  failures: () => import('./failures-command.ts'),
  retry: () => import('./retry-command.ts'),
  reset: () => import('./reset-command.ts'),
  runs: () => import('./runs-command.ts'),
  report: () => import('./report-command.ts'),
  work: () => import('./work-command.ts'),
  tmp: () => import('./tmp-command.ts'),
  store: () => import('./store-command.ts'),
}
