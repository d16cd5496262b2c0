import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../src/database.ts'
import { listen, notify, type ReconnectInfo } from '../src/listen.ts'
import { admin, cleanEnv, freshDatabase } from './helpers.ts'

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`LISTEN/NOTIFY (${pooling})`, () => {
    let db: Database
    before(async () => {
      const { url } = await freshDatabase('listen')
      db = new Database({ connectionString: url, env: cleanEnv(), pooling })
    })
    after(() => db.close())

    it('round-trips a mixed-case channel name exactly', async () => {
      await using jobs = await listen(db, ['Jobs Queue', 'jobs'])
      await notify(db, 'Jobs Queue', 'first')
      await notify(db, 'jobs', 'second')
      const a = await jobs.next()
      const b = await jobs.next()
      assert.deepEqual([a?.channel, a?.payload, b?.channel, b?.payload], ['Jobs Queue', 'first', 'jobs', 'second'])
      assert.equal(typeof a?.pid, 'number')
    })

    it('yields idle ticks when asked to', async () => {
      await using quiet = await listen(db, 'quiet', { idleMillis: 50 })
      assert.deepEqual(await quiet.next(), { kind: 'idle' })
    })

    it('delivers a NOTIFY sent inside a transaction on commit', async () => {
      await using l = await listen(db, 'tx')
      await db.transaction(async (tx) => notify(tx, 'tx', 'committed'))
      assert.equal((await l.next())?.payload, 'committed')
    })

    it('reconnects after pg_terminate_backend, re-LISTENs and says so', async () => {
      const reconnects: ReconnectInfo[] = []
      await using l = await listen(db, 'Survivor', { reconnectDelayMillis: 20, onReconnect: (info) => reconnects.push(info) })
      const before = l.pid
      await admin('SELECT pg_terminate_backend($1)', [before])
      const deadline = Date.now() + 10_000
      while (l.reconnects === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      assert.equal(reconnects.length, 1)
      assert.notEqual(l.pid, before)
      await notify(db, 'Survivor', 'after the kill')
      const n = await l.next()
      assert.deepEqual([n?.channel, n?.payload], ['Survivor', 'after the kill'])
    })

    it('iterating with for-await ends cleanly on close', async () => {
      const l = await listen(db, 'loop')
      await notify(db, 'loop', '1')
      await notify(db, 'loop', '2')
      const got: string[] = []
      for await (const n of l) {
        got.push(n.payload)
        if (got.length === 2) break
      }
      assert.deepEqual(got, ['1', '2'])
      assert.equal(await l.next(), undefined)
    })
  })
}
