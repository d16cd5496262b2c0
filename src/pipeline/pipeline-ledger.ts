import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError } from '../errors/database-error.ts'
import { qname, quoteIdent } from '../toolkit/quote.ts'
import { tableParts, tableSql } from '../toolkit/table-name.ts'
import type { Transaction } from '../database/transaction.ts'

/** The ledger table's default name. */
export const DEFAULT_LEDGER = 'pgcrew_ledger'

/** The ledger table quoted for SQL: `table` or `schema.table`, read as COPY reads table names. */
export function ledgerName(name: string): string {
  return tableSql(name, 'the ledger table')
}

/** What the ledger needs: a rerun reads done keys, markDone/recordFailure upsert (ON CONFLICT DO UPDATE … WHERE reads the row). */
const LEDGER_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE'] as const

interface LedgerAccess {
  role: string
  readOnly: boolean
  exists: boolean
  missing: string[]
}

/**
 * Make sure the pipeline can use its ledger: create it when it is missing (the advisory lock
 * serialises racing creators), and otherwise only check it. A role that may write an existing ledger
 * needs no CREATE on its schema. A ledger this session cannot write fails here with
 * LEDGER_NOT_WRITABLE, naming the table, the role and the ways out, before any task runs.
 */
export async function ensureLedger(db: Database, table: string): Promise<void> {
  const parts = tableParts(table, 'the ledger table')
  const t = qname(...parts)
  let access: LedgerAccess
  try {
    access = await ledgerAccess(db, t)
  } catch (error) {
    // to_regclass refuses a schema the role may not use (42501).
    if (error instanceof DatabaseError && error.code === '42501') {
      throw await notWritable(db, t, parts, 'use', `it has no USAGE on schema ${qname(parts[0]!)} (${error.message})`, error)
    }
    throw error
  }
  if (access.exists) {
    if (access.readOnly) throw await notWritable(db, t, parts, 'write', 'the session is read-only (becomeUser(), or readonly in the profile)')
    if (access.missing.length > 0) throw await notWritable(db, t, parts, 'write', `it lacks ${access.missing.join(', ')} on it`)
    return
  }
  try {
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
  } catch (error) {
    if (error instanceof DatabaseError && (error.code === '42501' || error.code === '25006')) {
      const why = error.code === '25006' ? 'the session is read-only (becomeUser(), or readonly in the profile)' : `it may not create tables there (${error.message})`
      throw await notWritable(db, t, parts, 'create', why, error)
    }
    throw error
  }
}

async function ledgerAccess(db: Database, t: string): Promise<LedgerAccess> {
  const { rows } = await db.query<{ role: string; read_only: boolean; exists: boolean; has: boolean[] }>(
    `SELECT current_user AS role, current_setting('transaction_read_only') = 'on' AS read_only, r IS NOT NULL AS exists,
            ARRAY(SELECT r IS NOT NULL AND has_table_privilege(r, p) FROM unnest($2::text[]) WITH ORDINALITY AS u(p, i) ORDER BY i) AS has
       FROM to_regclass($1) AS r`,
    [t, LEDGER_PRIVILEGES],
  )
  const row = rows[0]!
  return { role: row.role, readOnly: row.read_only, exists: row.exists, missing: LEDGER_PRIVILEGES.filter((_, i) => !row.has[i]) }
}

/** The error for a ledger this session cannot use: which table, which role, and what to do. */
async function notWritable(db: Database, t: string, parts: readonly string[], verb: 'use' | 'write' | 'create', why: string, cause?: unknown): Promise<PgcrewError> {
  const role = (await db.query<{ role: string }>('SELECT current_user AS role').catch(() => ({ rows: [{ role: db.user ?? '?' }] }))).rows[0]!.role
  const grants =
    verb === 'create'
      ? `have an admin create it once (run the pipeline --as admin) and GRANT ${LEDGER_PRIVILEGES.join(', ')} ON ${t} TO ${quoteIdent(role)}`
      : `have its owner run: ${verb === 'use' && parts.length === 2 ? `GRANT USAGE ON SCHEMA ${quoteIdent(parts[0]!)} TO ${quoteIdent(role)}; ` : ''}GRANT ${LEDGER_PRIVILEGES.join(', ')} ON ${t} TO ${quoteIdent(role)}`
  return new PgcrewError(
    'LEDGER_NOT_WRITABLE',
    `the ledger table ${t} cannot be ${verb === 'use' ? 'used' : verb === 'write' ? 'written' : 'created'} by role ${quoteIdent(role)}: ${why}. ` +
      `Ways out: run as a role that may write it (pgcrew run … --as admin, or db.becomeAdmin()); give the pipeline a ledger in a schema ${quoteIdent(role)} can write (ledger: 'schema.table'); or ${grants}`,
    { cause, details: { table: t, role } },
  )
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
