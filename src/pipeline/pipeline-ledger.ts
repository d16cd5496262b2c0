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

/**
 * Columns added after the first release, with their types: an older ledger gains them in place
 * (ALTER TABLE … ADD COLUMN IF NOT EXISTS) the first time a newer pgcrew uses it.
 */
const LATER_COLUMNS = { host: 'text', error_code: 'text' } as const

interface LedgerAccess {
  role: string
  readOnly: boolean
  exists: boolean
  missing: string[]
  /** LATER_COLUMNS this ledger does not have yet. */
  old: string[]
  /** Whether it has the partial indexes of failed and of done rows (ledgers made before them lack them). */
  failedIndex: boolean
  doneIndex: boolean
}

/**
 * The partial index of failed keys: `pgcrew status` counts failures and `pgcrew failures` lists the
 * newest first from it without reading the done rows (millions, where failures are a handful); the
 * total comes from the primary key. An index name is unqualified: it lives in the table's schema.
 */
function failedIndexSql(t: string, parts: readonly string[]): string {
  return `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${parts.at(-1)!}_failed`)} ON ${t} (pipeline, finished_at DESC) WHERE status = 'failed'`
}

/**
 * The partial index of done keys by when they finished: `pgcrew status` keeps the done count sealed
 * up to a recent point and counts only the rows finished since (history/ledger-counts.ts), so its
 * cost is the rows since the last status, not the ledger's size. Each done task adds one entry.
 */
function doneIndexSql(t: string, parts: readonly string[]): string {
  return `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${parts.at(-1)!}_done`)} ON ${t} (pipeline, finished_at) WHERE status = 'done'`
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
    if (access.old.length > 0) await upgradeLedger(db, t, access.old)
    if (!access.failedIndex) await addIndex(db, failedIndexSql(t, parts))
    if (!access.doneIndex) await addIndex(db, doneIndexSql(t, parts))
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
        host        text,
        error_code  text,
        error       text,
        finished_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, key))`)
      await tx.query(failedIndexSql(t, parts))
      await tx.query(doneIndexSql(t, parts))
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
  const { rows } = await db.query<{ role: string; read_only: boolean; exists: boolean; has: boolean[]; old: string[]; failed_index: boolean; done_index: boolean }>(
    `SELECT current_user AS role, current_setting('transaction_read_only') = 'on' AS read_only, r IS NOT NULL AS exists,
            ARRAY(SELECT r IS NOT NULL AND has_table_privilege(r, p) FROM unnest($2::text[]) WITH ORDINALITY AS u(p, i) ORDER BY i) AS has,
            ARRAY(SELECT c FROM unnest($3::text[]) AS c WHERE r IS NOT NULL
                     AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = r AND a.attname = c AND NOT a.attisdropped)) AS old,
            EXISTS (SELECT FROM pg_index i WHERE i.indrelid = r AND i.indpred IS NOT NULL
                       AND pg_get_expr(i.indpred, i.indrelid) LIKE '%status%failed%') AS failed_index,
            EXISTS (SELECT FROM pg_index i WHERE i.indrelid = r AND i.indpred IS NOT NULL
                       AND pg_get_expr(i.indpred, i.indrelid) LIKE '%status%done%') AS done_index
       FROM to_regclass($1) AS r`,
    [t, LEDGER_PRIVILEGES, Object.keys(LATER_COLUMNS)],
  )
  const row = rows[0]!
  return {
    role: row.role,
    readOnly: row.read_only,
    exists: row.exists,
    missing: LEDGER_PRIVILEGES.filter((_, i) => !row.has[i]),
    old: row.old,
    failedIndex: row.failed_index,
    doneIndex: row.done_index,
  }
}

/**
 * Bring an older ledger up to date in place: its rows stay, the new columns start NULL. Racing
 * upgraders are serialised by the ledger's advisory lock (IF NOT EXISTS makes the second a no-op).
 * Only the table's owner may alter it: anyone else is told what to ask the owner to run.
 */
async function upgradeLedger(db: Database, t: string, old: readonly string[]): Promise<void> {
  const alter = `ALTER TABLE ${t} ${old.map((c) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(c)} ${LATER_COLUMNS[c as keyof typeof LATER_COLUMNS]}`).join(', ')}`
  try {
    await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('pgcrew.ledger'))")
      await tx.query(alter)
    })
  } catch (error) {
    if (error instanceof DatabaseError && error.code === '42501') {
      const role = (await db.query<{ role: string }>('SELECT current_user AS role')).rows[0]!.role
      throw new PgcrewError(
        'LEDGER_NEEDS_UPGRADE',
        `the ledger table ${t} was made by an older pgcrew and lacks the column${old.length > 1 ? 's' : ''} ${old.join(', ')}; role ${quoteIdent(role)} may not add ${old.length > 1 ? 'them' : 'it'} (${error.message}). ` +
          `Have its owner run once: ${alter}, or run the pipeline once as its owner (pgcrew run … --as admin)`,
        { cause: error, details: { table: t, role, columns: [...old] } },
      )
    }
    throw error
  }
}

/**
 * Give an older ledger an index it lacks. Only its owner may: another role's run goes on without it
 * (the indexes make `pgcrew status` fast on a big ledger; nothing depends on them).
 */
async function addIndex(db: Database, sql: string): Promise<void> {
  try {
    await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('pgcrew.ledger'))")
      await tx.query(sql)
    })
  } catch (error) {
    if (!(error instanceof DatabaseError && error.code === '42501')) throw error
  }
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
export async function markDone(tx: Transaction, table: string, pipeline: string, key: string, attempt: number, workerId: number, host: string): Promise<boolean> {
  const { text, values } = claimStatement(table, pipeline, key, attempt, workerId, host)
  const { rowCount } = await tx.query(text, values)
  return rowCount === 1
}

/**
 * The statement markDone runs: it affects one row when the key was claimed, none when it was already
 * done. `attempts` adds up over runs: a key that failed twice in one run and succeeds at its first
 * attempt in the next shows 3. Its text depends only on the table, so it is prepared once per connection.
 */
export function claimStatement(table: string, pipeline: string, key: string, attempt: number, workerId: number, host: string): { text: string; values: unknown[] } {
  return {
    text: `INSERT INTO ${ledgerName(table)} AS l (pipeline, key, status, attempts, worker, host) VALUES ($1, $2, 'done', $3, $4, $5)
     ON CONFLICT (pipeline, key) DO UPDATE SET status = 'done', attempts = l.attempts + EXCLUDED.attempts, worker = EXCLUDED.worker, host = EXCLUDED.host,
       error_code = NULL, error = NULL, finished_at = now()
     WHERE l.status <> 'done'`,
    values: [pipeline, key, attempt, workerId, host],
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

/** A permanent failure as the ledger keeps it: which attempt of this run gave up, where, and why. */
export interface LedgerFailure {
  pipeline: string
  key: string
  /** Attempts this run made; the ledger adds them to those of earlier runs. */
  attempts: number
  /** The worker that ran the last attempt, when one did (a task that never reached a worker has none). */
  workerId?: number
  host: string
  /** The error's code: a SQLSTATE, a PgcrewError code, or a JavaScript error's name. */
  code?: string
  message: string
}

/** Record a permanent failure (outside any task transaction: the task's own writes rolled back). */
export async function recordFailure(db: Database, table: string, failure: LedgerFailure): Promise<void> {
  const t = ledgerName(table)
  await db.query(
    `INSERT INTO ${t} AS l (pipeline, key, status, attempts, worker, host, error_code, error) VALUES ($1, $2, 'failed', $3, $4, $5, $6, $7)
     ON CONFLICT (pipeline, key) DO UPDATE SET status = 'failed', attempts = l.attempts + EXCLUDED.attempts, worker = EXCLUDED.worker, host = EXCLUDED.host,
       error_code = EXCLUDED.error_code, error = EXCLUDED.error, finished_at = now()
     WHERE l.status <> 'done'`,
    [failure.pipeline, failure.key, failure.attempts, failure.workerId ?? null, failure.host, failure.code ?? null, ledgerMessage(failure.message)],
  )
}

/** Which of these keys are done: one query per batch, not per task. */
export async function doneKeys(db: Database, table: string, pipeline: string, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set()
  const { rows } = await db.query<{ key: string }>(`SELECT key FROM ${ledgerName(table)} WHERE pipeline = $1 AND key = ANY($2::text[]) AND status = 'done'`, [pipeline, keys])
  return new Set(rows.map((r) => r.key))
}
