import type { Database } from './database.ts'
import { PgcrewError } from './errors.ts'
import { qname } from './quote.ts'
import type { Transaction } from './transaction.ts'

/** The ledger table's default name. */
export const DEFAULT_LEDGER = 'pgcrew_ledger'

/** `schema.table` or `table`, quoted; anything else is refused rather than interpolated. */
export function ledgerName(name: string): string {
  if (!/^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?$/.test(name)) {
    throw new PgcrewError('INVALID_OPTION', `ledger table "${name}" must be "table" or "schema.table" (letters, digits, _)`)
  }
  return qname(...name.split('.'))
}

/** Create the ledger table if it does not exist (safe to race: the advisory lock serialises creators). */
export async function ensureLedger(db: Database, table: string): Promise<void> {
  const t = ledgerName(table)
  await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('pgcrew.ledger'))")
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t} (
      pipeline    text        NOT NULL,
      key         text        NOT NULL,
      status      text        NOT NULL CHECK (status IN ('done', 'failed')),
      attempts    integer     NOT NULL DEFAULT 1,
      worker      integer,
      error       text,
      finished_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (pipeline, key))`)
  })
}

/**
 * Mark a key done inside the task's own transaction. Returns false when it was already done (the
 * caller must then do nothing): this is what makes a rerun, or a duplicate, do nothing twice.
 */
export async function markDone(tx: Transaction, table: string, pipeline: string, key: string, attempt: number, workerId: number): Promise<boolean> {
  const { text, values } = claimStatement(table, pipeline, key, attempt, workerId)
  const { rowCount } = await tx.query(text, values)
  return rowCount === 1
}

/** The statement markDone runs: it affects one row when the key was claimed, none when it was already done. */
export function claimStatement(table: string, pipeline: string, key: string, attempt: number, workerId: number): { text: string; values: unknown[] } {
  return {
    text: `INSERT INTO ${ledgerName(table)} AS l (pipeline, key, status, attempts, worker) VALUES ($1, $2, 'done', $3, $4)
     ON CONFLICT (pipeline, key) DO UPDATE SET status = 'done', attempts = EXCLUDED.attempts, worker = EXCLUDED.worker, error = NULL, finished_at = now()
     WHERE l.status <> 'done'`,
    values: [pipeline, key, attempt, workerId],
  }
}

/**
 * An error message as PostgreSQL `text` can hold it: NUL bytes (which text refuses) become the two
 * characters `\0`, and the message is cut to 2000 characters (without splitting a surrogate pair).
 */
function ledgerMessage(message: string): string {
  let m = message.replaceAll('\u0000', '\\0')
  if (m.length > 2000) m = m.slice(0, /[\uD800-\uDBFF]/.test(m[1999]!) ? 1999 : 2000)
  return m
}

/** Record a permanent failure (outside any task transaction: the task's own writes rolled back). */
export async function recordFailure(db: Database, table: string, pipeline: string, key: string, attempts: number, message: string): Promise<void> {
  const t = ledgerName(table)
  await db.query(
    `INSERT INTO ${t} AS l (pipeline, key, status, attempts, error) VALUES ($1, $2, 'failed', $3, $4)
     ON CONFLICT (pipeline, key) DO UPDATE SET status = 'failed', attempts = EXCLUDED.attempts, error = EXCLUDED.error, finished_at = now()
     WHERE l.status <> 'done'`,
    [pipeline, key, attempts, ledgerMessage(message)],
  )
}

/** Which of these keys are done: one query per batch, not per task. */
export async function doneKeys(db: Database, table: string, pipeline: string, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set()
  const { rows } = await db.query<{ key: string }>(`SELECT key FROM ${ledgerName(table)} WHERE pipeline = $1 AND key = ANY($2::text[]) AND status = 'done'`, [pipeline, keys])
  return new Set(rows.map((r) => r.key))
}
