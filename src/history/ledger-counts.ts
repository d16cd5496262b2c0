// A pipeline's done count without reading all its rows, exact, and at no cost to the tasks: the
// count of done rows finished before a point in time (the seal) is kept in the store, and `status`
// counts only the rows finished since, through the partial index of done rows (pipeline,
// finished_at). No trigger and no counter row: the ledger write of every task stays what it was.
//
// Why the sealed part stays exact: a done row never changes (markDone and recordFailure leave done
// rows alone), and its finished_at is its transaction's start (now()). So once no transaction that
// started before the seal can still commit, the done rows finished before it are a fixed set. A point
// becomes a seal only after every transaction that was running when it was taken has ended (their
// virtual transaction ids, from pg_locks, are gone), and it is taken 10 s in the past, far more than
// a backend takes from receiving BEGIN to registering its transaction. A retried failure that
// succeeds is a new done row finished now, beyond the seal. `pgcrew reset` drops the pipeline's
// seal in its own transaction; a ledger dropped, recreated, truncated or rewritten is another
// relfilenode and starts over. What it cannot see: done rows deleted or edited by hand
// (`ledgerCounts(…, { recount: true })` / `pgcrew status --recount` counts all over again).
import type { Database } from '../database/database.ts'
import { DatabaseError } from '../errors/database-error.ts'
import type { Transaction } from '../database/transaction.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'
import { qname } from '../toolkit/quote.ts'

/** How far back a new seal point is taken, in seconds (see above). */
const SEAL_MARGIN_SECONDS = 10
/** How long the first status of a pipeline waits for the transactions running now to end, to seal at once. */
const SEAL_WAIT_MILLIS = 200

type SealRow = { relfile: string; sealed_at: Date | null; done: string; candidate_at: Date | null; candidate_vxids: string[] | null }

const sealTable = (schema: string): string => qname(schema, 'ledger_seals')

/** The table of seals, in the history's schema; false when this role may not have it (status then counts every row). */
async function ensureSealTable(db: Database, schema: string): Promise<boolean> {
  try {
    const { rows } = await db.query<{ exists: boolean; ok: boolean }>(
      `SELECT r IS NOT NULL AS exists, r IS NOT NULL AND has_table_privilege(r, 'SELECT') AND has_table_privilege(r, 'INSERT') AND has_table_privilege(r, 'UPDATE') AS ok
         FROM to_regclass($1) AS r`,
      [sealTable(schema)],
    )
    if (rows[0]!.exists) return rows[0]!.ok
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [hashKey(`pgcrew.history:${schema}`).toString()])
      await tx.query(`CREATE SCHEMA IF NOT EXISTS ${qname(schema)}`)
      await tx.query(`CREATE TABLE IF NOT EXISTS ${sealTable(schema)} (
        ledger oid NOT NULL, pipeline text NOT NULL, relfile oid NOT NULL,
        sealed_at timestamptz, done bigint NOT NULL DEFAULT 0,
        candidate_at timestamptz, candidate_vxids text[],
        PRIMARY KEY (ledger, pipeline))`)
    })
    return true
  } catch {
    return false
  }
}

/** The virtual transaction ids running now (but ours), after the time they are compared against. */
async function runningNow(tx: Transaction): Promise<{ at: Date; vxids: string[] }> {
  const at = (await tx.query<{ at: Date }>(`SELECT clock_timestamp() - interval '${SEAL_MARGIN_SECONDS} seconds' AS at`)).rows[0]!.at
  const { rows } = await tx.query<{ vxids: string[] }>(
    // Autovacuum writes no ledger rows: a long vacuum of the ledger itself does not hold the seal back.
    // A prepared transaction (two-phase commit) has no virtual id any more: it is waited for by its xid.
    `SELECT ARRAY(SELECT virtualxid FROM pg_locks
                   WHERE locktype = 'virtualxid' AND granted AND pid <> pg_backend_pid()
                     AND pid NOT IN (SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'autovacuum%')
                  UNION ALL SELECT 'prepared ' || transaction FROM pg_prepared_xacts) AS vxids`,
  )
  return { at, vxids: rows[0]!.vxids }
}

async function allEnded(tx: Transaction, vxids: readonly string[]): Promise<boolean> {
  if (vxids.length === 0) return true
  const { rows } = await tx.query<{ ended: boolean }>(
    `SELECT NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[]))
        AND NOT EXISTS (SELECT FROM pg_prepared_xacts WHERE 'prepared ' || transaction = ANY($1::text[])) AS ended`,
    [vxids],
  )
  return rows[0]!.ended
}

/**
 * The done count of `pipeline` in ledger `t` (quoted), exact, from its seal; moves the seal forward.
 * undefined when the seals cannot be kept (a role that may not write the store): count every row then.
 */
export async function sealedDoneCount(db: Database, t: string, pipeline: string, schema: string, recount = false): Promise<number | undefined> {
  if (!(await ensureSealTable(db, schema))) return undefined
  const seals = sealTable(schema)
  try {
    return await sealed(db, t, pipeline, seals, recount)
  } catch (error) {
    // A read-only session (becomeUser, a standby): count every row instead.
    if (error instanceof DatabaseError && (error.code === '25006' || error.code === '42501')) return undefined
    throw error
  }
}

async function sealed(db: Database, t: string, pipeline: string, seals: string, recount: boolean): Promise<number> {
  return db.transaction(
    async (tx) => {
      const { rows: rel } = await tx.query<{ oid: string; relfile: string }>('SELECT oid, relfilenode AS relfile FROM pg_class WHERE oid = to_regclass($1)', [t])
      const { oid, relfile } = rel[0]!
      await tx.query(`INSERT INTO ${seals} (ledger, pipeline, relfile) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [oid, pipeline, relfile])
      // One status at a time moves a pipeline's seal (another waits here, then finds it moved).
      let seal = (await tx.query<SealRow>(`SELECT relfile, sealed_at, done, candidate_at, candidate_vxids FROM ${seals} WHERE ledger = $1 AND pipeline = $2 FOR UPDATE`, [oid, pipeline])).rows[0]!
      if (recount || seal.relfile !== relfile) seal = { relfile, sealed_at: null, done: '0', candidate_at: null, candidate_vxids: null }
      let sealedAt = seal.sealed_at
      let done = Number(seal.done)
      const countSince = async (from: Date | null, to?: Date): Promise<{ before: number; all: number }> => {
        const { rows } = await tx.query<{ before: string; all: string }>(
          `SELECT count(*) FILTER (WHERE finished_at < $3) AS before, count(*) AS all FROM ${t}
          WHERE pipeline = $1 AND status = 'done' AND finished_at >= coalesce($2::timestamptz, '-infinity')`,
          [pipeline, from, to ?? null],
        )
        return { before: Number(rows[0]!.before), all: Number(rows[0]!.all) }
      }
      // An earlier status's point whose transactions have all ended since: seal it.
      let candidate = seal.candidate_at ? { at: seal.candidate_at, vxids: seal.candidate_vxids ?? [] } : undefined
      if (candidate && (await allEnded(tx, candidate.vxids))) {
        done += (await countSince(sealedAt, candidate.at)).before
        sealedAt = candidate.at
        candidate = undefined
      }
      // A point of now: sealed at once when nothing runs, else by a later status. The first status
      // of a pipeline waits a little for what runs to end, or the next would count every row again.
      const now = await runningNow(tx)
      const waitUntil = Date.now() + (sealedAt === null ? SEAL_WAIT_MILLIS : 0)
      let ended = await allEnded(tx, now.vxids)
      while (!ended && Date.now() < waitUntil) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        ended = await allEnded(tx, now.vxids)
      }
      let answer: number
      if (ended) {
        const c = await countSince(sealedAt, now.at)
        answer = done + c.all
        done += c.before
        sealedAt = now.at
        candidate = undefined
      } else {
        answer = done + (await countSince(sealedAt)).all
        candidate ??= now
      }
      await tx.query(`UPDATE ${seals} SET relfile = $3, sealed_at = $4, done = $5, candidate_at = $6, candidate_vxids = $7 WHERE ledger = $1 AND pipeline = $2`, [
        oid,
        pipeline,
        relfile,
        sealedAt,
        done,
        candidate?.at ?? null,
        candidate?.vxids ?? null,
      ])
      return answer
    },
    { isolation: 'read committed' },
  )
}

/** Forget a pipeline's seal (its rows are being deleted): inside the deleting transaction. */
export async function dropSeal(tx: Transaction, t: string, pipeline: string, schema: string): Promise<void> {
  const { rows } = await tx.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [sealTable(schema)])
  if (rows[0]!.ok) await tx.query(`DELETE FROM ${sealTable(schema)} WHERE ledger = to_regclass($1) AND pipeline = $2`, [t, pipeline])
}
