// What `pgcrew status | failures | retry | reset` read from and do to a pipeline's ledger. Counting
// is served by two indexes: the primary key (pipeline, key) for the pipeline's rows, and the partial
// index of failed rows (pipeline-ledger.ts) for the failures, so status never reads the done rows'
// heap and failures never scan past the done ones.
import type { Database } from '../database/database.ts'
import { ledgerName } from '../pipeline/pipeline-ledger.ts'

/** A pipeline's keys in its ledger. */
export interface LedgerCounts {
  /** Keys done (each exactly once). */
  done: number
  /** Keys whose last run failed for good. */
  failed: number
  /** Every key the ledger holds for the pipeline (done + failed). */
  recorded: number
}

/** One failed key, as `pgcrew failures` shows it. */
export interface LedgerFailureRow {
  key: string
  /** Attempts over every run so far. */
  attempts: number
  code: string | null
  message: string | null
  worker: number | null
  host: string | null
  finishedAt: Date
}

/** Whether the ledger table exists (a pipeline never run has none; that is no error for status). */
async function ledgerExists(db: Database, ledger: string): Promise<boolean> {
  const { rows } = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [ledgerName(ledger)])
  return rows[0]!.exists
}

/** Done and failed counts of one pipeline: two index scans, one statement. */
export async function ledgerCounts(db: Database, ledger: string, pipeline: string): Promise<LedgerCounts> {
  if (!(await ledgerExists(db, ledger))) return { done: 0, failed: 0, recorded: 0 }
  const t = ledgerName(ledger)
  const { rows } = await db.query<{ recorded: string; failed: string }>(
    `SELECT (SELECT count(*) FROM ${t} WHERE pipeline = $1) AS recorded, (SELECT count(*) FROM ${t} WHERE pipeline = $1 AND status = 'failed') AS failed`,
    [pipeline],
  )
  const recorded = Number(rows[0]!.recorded)
  const failed = Number(rows[0]!.failed)
  return { done: recorded - failed, failed, recorded }
}

/** The newest failures first, at most `limit` (all without it). */
export async function ledgerFailures(db: Database, ledger: string, pipeline: string, limit?: number): Promise<LedgerFailureRow[]> {
  if (!(await ledgerExists(db, ledger))) return []
  const { rows } = await db.query<LedgerFailureRow>(
    `SELECT key, attempts, error_code AS code, error AS message, worker, host, finished_at AS "finishedAt"
       FROM ${ledgerName(ledger)} WHERE pipeline = $1 AND status = 'failed' ORDER BY finished_at DESC, key LIMIT $2`,
    [pipeline, limit ?? null],
  )
  return rows
}

/** Every failed key of the pipeline (what `retry --failed` runs again). */
export async function failedKeys(db: Database, ledger: string, pipeline: string): Promise<Set<string>> {
  if (!(await ledgerExists(db, ledger))) return new Set()
  const { rows } = await db.query<{ key: string }>(`SELECT key FROM ${ledgerName(ledger)} WHERE pipeline = $1 AND status = 'failed'`, [pipeline])
  return new Set(rows.map((r) => r.key))
}

/** Forget the failed rows (`retry --failed --mark-only`): the next run treats those keys as never tried. */
export async function forgetFailures(db: Database, ledger: string, pipeline: string): Promise<number> {
  if (!(await ledgerExists(db, ledger))) return 0
  return (await db.query(`DELETE FROM ${ledgerName(ledger)} WHERE pipeline = $1 AND status = 'failed'`, [pipeline])).rowCount ?? 0
}

/** Forget every ledger row of the pipeline (`pgcrew reset`); the pipeline's own tables are not touched. */
export async function resetLedger(db: Database, ledger: string, pipeline: string): Promise<number> {
  if (!(await ledgerExists(db, ledger))) return 0
  return (await db.query(`DELETE FROM ${ledgerName(ledger)} WHERE pipeline = $1`, [pipeline])).rowCount ?? 0
}
