// What `pgcrew status | failures | retry | reset` read from and do to a pipeline's ledger. Counting
// is served by the two partial indexes (pipeline-ledger.ts): the done count is kept sealed up to a
// recent point (ledger-counts.ts) and only the rows since are counted; failures never scan past the
// done rows.
import type { Database } from '../database/database.ts'
import { ledgerName } from '../pipeline/pipeline-ledger.ts'
import { dropSeal, sealedDoneCount } from './ledger-counts.ts'
import { HISTORY_DEFAULTS } from './run-recorder.ts'

/** Options of {@link ledgerCounts}; every field is optional. */
export interface LedgerCountOptions {
  /** Schema of the run history, where the done counts are kept sealed. Default `pgcrew`. */
  schema?: string
  /** Count every done row again (after rows were deleted or changed by hand). Default false. */
  recount?: boolean
}

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

/**
 * Done and failed counts of one pipeline, exact: the failures from their partial index, the done
 * keys from the pipeline's seal and the rows since (every row, when the seal cannot be kept).
 */
export async function ledgerCounts(db: Database, ledger: string, pipeline: string, options: LedgerCountOptions = {}): Promise<LedgerCounts> {
  if (!(await ledgerExists(db, ledger))) return { done: 0, failed: 0, recorded: 0 }
  const t = ledgerName(ledger)
  const sealed = await sealedDoneCount(db, t, pipeline, options.schema ?? HISTORY_DEFAULTS.schema, options.recount ?? false)
  const { rows } = await db.query<{ done: string | null; failed: string }>(
    `SELECT CASE WHEN $2 THEN (SELECT count(*) FROM ${t} WHERE pipeline = $1 AND status = 'done') END AS done,
            (SELECT count(*) FROM ${t} WHERE pipeline = $1 AND status = 'failed') AS failed`,
    [pipeline, sealed === undefined],
  )
  const done = sealed ?? Number(rows[0]!.done)
  const failed = Number(rows[0]!.failed)
  return { done, failed, recorded: done + failed }
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

/** Forget every ledger row of the pipeline (`pgcrew reset`), and its sealed done count with them; the pipeline's own tables are not touched. */
export async function resetLedger(db: Database, ledger: string, pipeline: string, options: { schema?: string } = {}): Promise<number> {
  if (!(await ledgerExists(db, ledger))) return 0
  const t = ledgerName(ledger)
  return db.transaction(async (tx) => {
    const deleted = (await tx.query(`DELETE FROM ${t} WHERE pipeline = $1`, [pipeline])).rowCount ?? 0
    await dropSeal(tx, t, pipeline, options.schema ?? HISTORY_DEFAULTS.schema)
    return deleted
  })
}
