// `pgcrew status`: how far a pipeline is (the ledger), what its last runs did and what runs now (the
// run history), and when it will be done at the current pace.
import type { Database } from '../database/database.ts'
import { qname } from '../toolkit/quote.ts'
import { ledgerCounts } from './ledger-queries.ts'
import { listRuns } from './run-list.ts'
import { HISTORY_DEFAULTS } from './run-recorder.ts'
import type { RunRecord } from './run-record.ts'

/** A running run, with its pace now. */
export interface RunningRun {
  id: number
  host: string | null
  pid: number | null
  startedAt: Date
  /** Done tasks since the run started, at its last sample. */
  done: number
  /** Tasks per second over its last ten samples. */
  tasksPerSecond: number
}

export interface PipelineStatus {
  pipeline: string
  ledger: string
  done: number
  failed: number
  /** Tasks the source holds, when it can be counted. */
  total: number | null
  /** Not done yet (failed ones included), when the total is known. */
  remaining: number | null
  running: RunningRun[]
  /** Seconds to finish at the running runs' pace, when both are known. */
  etaSeconds: number | null
  /** The last runs, newest first. */
  runs: RunRecord[]
}

/** The pace of a running run: done tasks over its last ten samples. */
async function currentPace(db: Database, schema: string, run: RunRecord): Promise<RunningRun> {
  const { rows } = await db.query<{ value: number; at: Date }>(`SELECT value, at FROM ${qname(schema, 'readings')} WHERE session_id = $1 AND series = 'run.done' ORDER BY at DESC LIMIT 10`, [run.id])
  const newest = rows[0]
  const oldest = rows.at(-1)
  const seconds = newest && oldest ? (newest.at.getTime() - oldest.at.getTime()) / 1000 : 0
  return {
    id: run.id,
    host: run.host,
    pid: run.pid,
    startedAt: run.startedAt,
    done: newest?.value ?? 0,
    tasksPerSecond: seconds > 0 ? Math.round(((newest!.value - oldest!.value) / seconds) * 10) / 10 : 0,
  }
}

/** The status of one pipeline. `total` is the task source's length when the caller could count it. */
export async function pipelineStatus(db: Database, target: { pipeline: string; ledger: string; total?: number; runs?: number; schema?: string; recount?: boolean }): Promise<PipelineStatus> {
  const schema = target.schema ?? HISTORY_DEFAULTS.schema
  const counts = await ledgerCounts(db, target.ledger, target.pipeline, { schema, recount: target.recount })
  const runs = await listRuns(db, { pipeline: target.pipeline, limit: target.runs ?? 5, schema })
  const running = await Promise.all(runs.filter((r) => r.status === 'running').map((r) => currentPace(db, schema, r)))
  const total = target.total ?? null
  const remaining = total === null ? null : Math.max(0, total - counts.done)
  const pace = running.reduce((sum, r) => sum + r.tasksPerSecond, 0)
  return {
    pipeline: target.pipeline,
    ledger: target.ledger,
    done: counts.done,
    failed: counts.failed,
    total,
    remaining,
    running,
    etaSeconds: remaining !== null && pace > 0 ? Math.round(remaining / pace) : null,
    runs,
  }
}
