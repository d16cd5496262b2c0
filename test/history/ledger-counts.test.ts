// The done count `pgcrew status` shows is exact while it reads only the rows since its last seal:
// rows of transactions still open when it looked are counted once they commit (however old their
// finished_at), a reset or a retry is seen, a recreated ledger starts over, and rows deleted by hand
// are found again by a recount.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { claimStatement, ensureLedger } from '../../src/pipeline/pipeline-ledger.ts'
import { ledgerCounts, resetLedger } from '../../src/history/ledger-queries.ts'
import { cleanEnv, eventually, freshDatabase } from '../helpers.ts'

async function ledgerDb(prefix: string) {
  const { url } = await freshDatabase(prefix)
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
  await ensureLedger(db, 'pgcrew_ledger')
  const add = (from: number, to: number, status = 'done', age = '0 s') =>
    db.query(`INSERT INTO pgcrew_ledger (pipeline, key, status, finished_at) SELECT 'p', g::text, $3, now() - $4::interval FROM generate_series($1::int, $2::int) g`, [from, to, status, age])
  return { db, url, add }
}

const seal = async (db: Database) => (await db.query<{ sealed_at: Date | null; done: string }>("SELECT sealed_at, done FROM pgcrew.ledger_seals WHERE pipeline = 'p'")).rows[0]

/** Status until the seal holds `done` keys (it waits for the transactions that ran when it looked). */
const sealed = (db: Database, done: number) => eventually(async () => (await ledgerCounts(db, 'pgcrew_ledger', 'p')).done === done && (await seal(db))?.done === String(done), 30_000)

describe('ledger counts', () => {
  test('exact from the seal on: it moves forward, and counts what came since', async () => {
    const { db, add } = await ledgerDb('lcseal')
    await using _ = db
    await add(1, 500, 'done', '1 hour')
    await add(501, 510, 'failed', '1 hour')
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 500, failed: 10, recorded: 510 })
    // It seals 10 s back, with the 500 rows of an hour ago in it, once what ran when it looked has
    // ended (at once on a quiet server; other tests' transactions, in other databases, count too).
    assert.ok(await sealed(db, 500), `seal ${JSON.stringify(await seal(db))}`)
    await add(511, 800)
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 790, failed: 10, recorded: 800 })
    // The seal holds the count: a done row deleted by hand behind its back is seen only by a recount.
    await db.query("DELETE FROM pgcrew_ledger WHERE pipeline = 'p' AND key = '1'")
    assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 790)
    assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p', { recount: true })).done, 789)
    assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 789)
  })

  test("a transaction open while status looked is counted when it commits, however old its rows' finished_at", async () => {
    const { db, url, add } = await ledgerDb('lcopen')
    await using _ = db
    await add(1, 100, 'done', '2 hours')
    const other = new pg.Client({ connectionString: url })
    await other.connect()
    try {
      // A long task: its transaction began long ago (its finished_at is an hour back) and has not committed.
      await other.query('BEGIN')
      await other.query("INSERT INTO pgcrew_ledger (pipeline, key, status, finished_at) VALUES ('p', 'late', 'done', now() - interval '1 hour')")
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 100)
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 100)
      await other.query('COMMIT')
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 101)
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 101)
      // One that rolls back (a task of a run that crashed) is never counted.
      await other.query('BEGIN')
      await other.query("INSERT INTO pgcrew_ledger (pipeline, key, status, finished_at) VALUES ('p', 'gone', 'done', now() - interval '1 hour')")
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 101)
      await other.query('ROLLBACK')
      assert.equal((await ledgerCounts(db, 'pgcrew_ledger', 'p')).done, 101)
      assert.ok(await sealed(db, 101), `seal ${JSON.stringify(await seal(db))}`)
    } finally {
      await other.end()
    }
  })

  test('a retried failure that succeeds moves from failed to done; a reset drops the seal; a recreated ledger starts over', async () => {
    const { db, add } = await ledgerDb('lcretry')
    await using _ = db
    await add(1, 50, 'done', '1 hour')
    await add(51, 60, 'failed', '1 hour')
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 50, failed: 10, recorded: 60 })
    // What a task's claim does to a failed key (the worker sends this statement).
    const claim = claimStatement('pgcrew_ledger', 'p', '55', 1, 1, 'h')
    assert.equal((await db.query(claim.text, claim.values)).rowCount, 1)
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 51, failed: 9, recorded: 60 })
    assert.equal(await resetLedger(db, 'pgcrew_ledger', 'p'), 60)
    assert.equal(await seal(db), undefined)
    await add(1, 5, 'done', '1 hour')
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 5, failed: 0, recorded: 5 })
    await db.query('DROP TABLE pgcrew_ledger')
    await ensureLedger(db, 'pgcrew_ledger')
    await add(1, 3, 'done', '1 hour')
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 3, failed: 0, recorded: 3 })
    await db.query('TRUNCATE pgcrew_ledger')
    assert.deepEqual(await ledgerCounts(db, 'pgcrew_ledger', 'p'), { done: 0, failed: 0, recorded: 0 })
  })

  test('a ledger made before the index of done rows gains it from its owner', async () => {
    const { db } = await ledgerDb('lcindex')
    await using _ = db
    const indexes = async () => (await db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'pgcrew_ledger' ORDER BY 1")).rows.map((r) => r.indexname)
    assert.deepEqual(await indexes(), ['pgcrew_ledger_done', 'pgcrew_ledger_failed', 'pgcrew_ledger_pkey'])
    await db.query('DROP INDEX pgcrew_ledger_done')
    await ensureLedger(db, 'pgcrew_ledger')
    assert.deepEqual(await indexes(), ['pgcrew_ledger_done', 'pgcrew_ledger_failed', 'pgcrew_ledger_pkey'])
  })
})
