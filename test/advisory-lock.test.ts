import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../src/database.ts'
import { LockNotAvailable } from '../src/database-error.ts'
import { advisoryLock, hashKey, withAdvisoryLock } from '../src/advisory-lock.ts'
import { cleanEnv, freshDatabase } from './helpers.ts'

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`advisory locks (${pooling})`, () => {
    let db: Database
    let other: Database
    before(async () => {
      const { url } = await freshDatabase('alock')
      db = new Database({ connectionString: url, env: cleanEnv(), pooling })
      other = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
    })
    after(async () => { await db.close(); await other.close() })

    const freeElsewhere = async (key: bigint): Promise<boolean> => other.withClient(async (c) => {
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
      await assert.rejects(withAdvisoryLock(db, 'job', async () => {
        assert.equal(await freeElsewhere(hashKey('job')), false)
        await withAdvisoryLock(db, 'job', async () => {})
        assert.equal(await freeElsewhere(hashKey('job')), false, 'the inner release did not unlock the outer')
        throw new Error('job failed')
      }), /job failed/)
      assert.equal(await freeElsewhere(hashKey('job')), true)
    })

    it('transaction scope lasts until the transaction ends', async () => {
      await withAdvisoryLock(db, 77n, async () => {
        assert.equal(await freeElsewhere(77n), false)
      }, { scope: 'transaction' })
      assert.equal(await freeElsewhere(77n), true)
      await assert.rejects(advisoryLock(db, 78n, { scope: 'transaction' }), /inside a transaction/)
    })
  })
}
