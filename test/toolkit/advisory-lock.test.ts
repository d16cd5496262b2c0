import { after, before, describe, it, test } from 'node:test'
import assert from 'node:assert/strict'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { LockNotAvailable } from '../../src/errors/database-error.ts'
import { AdvisoryLock, advisoryLock, hashKey, withAdvisoryLock } from '../../src/toolkit/advisory-lock.ts'
import { cleanEnv, freshDatabase, admin } from '../helpers.ts'

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`advisory locks (${pooling})`, () => {
    let db: Database
    let other: Database
    // A second session of its own, as psql would be: what it sees in pg_locks is what other programs see.
    let psql: pg.Client
    before(async () => {
      const { url } = await freshDatabase('alock')
      db = new Database({ connectionString: url, env: cleanEnv(), pooling })
      other = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
      psql = new pg.Client({ connectionString: url })
      await psql.connect()
    })
    after(async () => {
      await db.close()
      await other.close()
      await psql.end()
    })

    /** Sessions holding advisory key `key` (a small bigint) in this database, as pg_locks shows them. */
    const holders = async (key: bigint): Promise<number> =>
      (
        await psql.query(
          "SELECT count(DISTINCT pid)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = 0 AND objid = $1 AND objsubid = 1",
          [String(key)],
        )
      ).rows[0].n

    const freeElsewhere = async (key: bigint): Promise<boolean> =>
      other.withClient(async (c) => {
        const ok = (await c.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [String(key)])).rows[0].ok
        if (ok) await c.query('SELECT pg_advisory_unlock($1::bigint)', [String(key)])
        return ok
      })

    it('is reentrant: two acquires, one release → still held as seen from another session', async () => {
      const lock = await advisoryLock(db, 42n)
      assert.equal(await lock.acquire(), true)
      assert.equal(lock.count, 2)
      await lock.release()
      assert.equal(await freeElsewhere(42n), false)
      await lock.release()
      assert.equal(await freeElsewhere(42n), true)
      await assert.rejects(lock.release(), /not held/)
    })

    it('string keys hash to a stable bigint; several keys lock in a fixed order', async () => {
      assert.equal(hashKey('nightly'), hashKey('nightly'))
      const lock = await advisoryLock(db, ['nightly', 7n, [1, 2]])
      assert.deepEqual(lock.keys, [...[hashKey('nightly'), 7n].sort((a, b) => (a < b ? -1 : 1)).map(String), '1/2'])
      assert.equal(await freeElsewhere(hashKey('nightly')), false)
      await lock.release()
      assert.equal(await freeElsewhere(hashKey('nightly')), true)
    })

    it('try-lock releases the keys it took when a later key is busy; a timeout throws LockNotAvailable', async () => {
      await other.withClient(async (c) => {
        await c.query('SELECT pg_advisory_lock(200)')
        assert.equal(await advisoryLock(db, [100n, 200n], { wait: false }), null)
        assert.equal(await freeElsewhere(100n), true, 'key 100 was released again')
        await assert.rejects(advisoryLock(db, 200n, { wait: 100 }), LockNotAvailable)
        await c.query('SELECT pg_advisory_unlock(200)')
      })
      assert.equal(await db.withClient(async (c) => (await c.query('SHOW lock_timeout')).rows[0].lock_timeout), '0')
    })

    it('withAdvisoryLock releases after a throw and nests without waiting on itself', async () => {
      await assert.rejects(
        withAdvisoryLock(db, 'job', async () => {
          assert.equal(await freeElsewhere(hashKey('job')), false)
          await withAdvisoryLock(db, 'job', async () => {})
          assert.equal(await freeElsewhere(hashKey('job')), false, 'the inner release did not unlock the outer')
          throw new Error('job failed')
        }),
        /job failed/,
      )
      assert.equal(await freeElsewhere(hashKey('job')), true)
    })

    it('a session lock taken inside db.transaction keeps that connection after COMMIT: no second holder in the Database, held until the last release', async () => {
      let lock: AdvisoryLock | undefined
      await db.transaction(async () => {
        lock = (await db.advisoryLock(301n))!
        assert.equal(await lock.acquire(), true)
      })
      assert.equal(await holders(301n), 1)
      assert.equal(await db.advisoryLock(301n, { wait: false }), null, 'the pool handed out the connection that holds the lock')
      assert.equal(await db.transaction(async () => db.advisoryLock(301n, { wait: false })), null)
      await lock!.release()
      assert.equal(await holders(301n), 1, 'still held: the count is 1')
      await lock!.release()
      assert.equal(await holders(301n), 0)
      // The connection went back to the pool and serves the next borrower.
      const again = (await db.advisoryLock(301n, { wait: false }))!
      assert.equal(await holders(301n), 1)
      await again.release()
    })

    it('a session lock on a Transaction outlives a ROLLBACK and keeps its connection until released', async () => {
      let lock: AdvisoryLock | undefined
      await assert.rejects(
        db.transaction(async (tx) => {
          lock = await advisoryLock(tx, 302n)
          await withAdvisoryLock(tx, 303n, async () => assert.equal(await holders(303n), 1))
          throw new Error('the work failed')
        }),
        /the work failed/,
      )
      assert.equal(await holders(303n), 0)
      assert.equal(await holders(302n), 1, 'session locks survive ROLLBACK')
      assert.equal(await advisoryLock(db, 302n, { wait: false }), null)
      await lock!.release()
      assert.equal(await holders(302n), 0)
      assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1)
    })

    it('transaction scope lasts until the transaction ends', async () => {
      await withAdvisoryLock(
        db,
        77n,
        async () => {
          assert.equal(await freeElsewhere(77n), false)
        },
        { scope: 'transaction' },
      )
      assert.equal(await freeElsewhere(77n), true)
      await assert.rejects(advisoryLock(db, 78n, { scope: 'transaction' }), /inside a transaction/)
    })
  })
}

describe('stuck servers, queued work and concurrent switches', () => {
  test('a timed advisory lock that fails half-way inside a transaction leaves no session lock on a pooled connection', async () => {
    const { url, dbname } = await freshDatabase('halfway')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await using other = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const blocker = (await other.advisoryLock(2n))!
    await assert.rejects(
      db.transaction(async (tx) => {
        const { advisoryLock } = await import('../../src/toolkit/advisory-lock.ts')
        await advisoryLock(tx, [1n, 2n], { wait: 200 })
      }),
      { code: '55P03' },
    )
    await blocker.release()
    const held = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = $1", [dbname])
    assert.equal(held[0]!.n, 0, 'key 1 is still held by a pooled connection')
  })
})

describe('settings and locks inside a transaction', () => {
  test('two overlapping acquire() calls on one lock take one connection and one server lock', async () => {
    const { url, dbname } = await freshDatabase('overlap')
    const warnings: string[] = []
    await using db = new Database({ connectionString: url, env: cleanEnv(), closeTimeoutMillis: 500, onWarning: (m) => warnings.push(m) })
    const lock = new AdvisoryLock(db, 'overlap-key', { shared: true })
    await Promise.all([lock.acquire(), lock.acquire()])
    assert.equal(lock.count, 2)
    await lock.release()
    await lock.release()
    const held = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = $1", [dbname])
    assert.equal(held[0]!.n, 0)
    await db.close()
    assert.deepEqual(warnings, [])
  })
})
