// How a run lives in the record store: a logging session whose name carries the run's liveness
// lock key and pipeline, whose messages are its start facts and its end; its once-a-second progress
// samples are readings of that session, its failures and incidents events of it.
import { randomBytes } from 'node:crypto'
import type { BudgetNumbers } from '../crew/crew-budget.ts'
import type { RunSummary } from '../pipeline/pipeline.ts'
import type { SlowTask } from './slowest-tasks.ts'

/** A run's state: running (its process holds the lock), or how it ended. */
export type RunStatus = 'running' | 'completed' | 'cancelled' | 'failed' | 'crashed'

/** The first message of a run's session. */
export interface RunStarted {
  kind: 'started'
  pipeline: string
  ledger: string
  host: string
  pid: number
  role: string
  database: string
  threads: number
  connections: number
  budget: BudgetNumbers
  /** Tasks the source holds, when it is an array. */
  total: number | null
  /** The bigint key of the session-level advisory lock the running process holds (as a string). */
  lockKey: string
}

/** The last message: how the run ended. */
export interface RunEnded {
  kind: 'ended'
  status: Exclude<RunStatus, 'running'>
  summary: RunSummary | null
  /** Why it stopped early (maxFailures), failed (the error), or was found crashed. */
  reason: string | null
}

/** The message that holds a run's slowest tasks: queued once, then updated in place as the list changes. */
export interface RunSlowest {
  kind: 'slowest'
  tasks: SlowTask[]
}

/** One run as `pgcrew runs` lists it. */
export interface RunRecord {
  id: number
  pipeline: string
  status: RunStatus
  host: string | null
  pid: number | null
  role: string | null
  database: string | null
  /** Threads that took tasks: the run's summary once it ended (with `threads: 'auto'`, the most in use at once), before that the threads it started with. */
  threads: number | null
  /** With `threads: 'auto'`, the most threads the run could have taken (its budget's); otherwise null. */
  threadsUpTo: number | null
  connections: number | null
  startedAt: Date
  endedAt: Date | null
  durationMillis: number
  done: number | null
  failed: number | null
  tasksPerSecond: number | null
  reason: string | null
  /** The slowest tasks, slowest first (as many as the run kept: 20 by default), as of its last sample or its end. */
  slowest: SlowTask[]
  started: RunStarted | null
  ended: RunEnded | null
}

/** Session names of runs start with this; the lock key and the pipeline follow, space-separated. */
export const RUN_SESSION_PREFIX = 'pgcrew.run '

/** A fresh lock key for a run (a random positive bigint, so runs on any machine never share one). */
export function newLockKey(): bigint {
  return BigInt.asIntN(64, randomBytes(8).readBigUInt64BE(0)) & 0x7fff_ffff_ffff_ffffn
}

export function runSessionName(lockKey: bigint, pipeline: string): string {
  return `${RUN_SESSION_PREFIX}${lockKey} ${pipeline}`
}

/** The lock key and pipeline of a run's session name; undefined for a session that is no run. */
export function parseRunSessionName(name: string | null): { lockKey: bigint; pipeline: string } | undefined {
  if (!name?.startsWith(RUN_SESSION_PREFIX)) return undefined
  const rest = name.slice(RUN_SESSION_PREFIX.length)
  const space = rest.indexOf(' ')
  if (space < 1 || !/^\d+$/.test(rest.slice(0, space))) return undefined
  return { lockKey: BigInt(rest.slice(0, space)), pipeline: rest.slice(space + 1) }
}

/** How a run that returned a summary ended: cancelled, failed (tasks failed or it stopped early), or completed. */
export function statusOf(summary: RunSummary): Exclude<RunStatus, 'running' | 'crashed'> {
  if (summary.cancelled) return 'cancelled'
  return summary.failed > 0 || summary.stopReason ? 'failed' : 'completed'
}
