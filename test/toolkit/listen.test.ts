import { after, before, describe, it, test } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../../src/database/database.ts'
import { listen, notify, type ReconnectInfo } from '../../src/toolkit/listen.ts'
import { admin, cleanEnv, freshDatabase } from '../helpers.ts'
import pg from 'pg'

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

describe('stuck servers, queued work and concurrent switches', () => {
  test('a listener made with listen(db) ends when the Database is closed, instead of retrying forever', { timeout: 10_000 }, async () => {
    const { listen } = await import('../../src/toolkit/listen.ts')
    const { url } = await freshDatabase('listenclosed')
    const db = new Database({ connectionString: url, env: cleanEnv(), closeTimeoutMillis: 100, onWarning: () => {} })
    const l = await listen(db, 'ch', { reconnectDelayMillis: 20 })
    const ended = l.next().then(
      (v) => v,
      (e: Error & { code?: string }) => e.code,
    )
    await db.close()
    assert.ok([undefined, 'LISTEN_CONNECTION_LOST'].includes((await ended) as string | undefined))
  })
})

describe('listeners', () => {
  test('overlapping next() calls all settle: one gets the notification, the other ends at close()', async () => {
    const { url } = await freshDatabase('overlapnext')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    const l = await db.listen('ch')
    const a = l.next()
    const b = l.next()
    await db.notify('ch', 'one')
    const first = await Promise.race([a, b])
    assert.equal(first?.payload, 'one')
    await l.close()
    const both = await Promise.all([a, b])
    assert.deepEqual(
      both.map((x) => x?.payload),
      first === both[0] ? ['one', undefined] : [undefined, 'one'],
    )
  })

  test('a listener on a raw pg client ends with LISTEN_CONNECTION_LOST when that connection dies, instead of going silent', async () => {
    const { url } = await freshDatabase('rawlisten')
    const client = new pg.Client({ connectionString: url })
    client.on('error', () => {})
    await client.connect()
    const l = await listen(client, 'ch')
    const ended = assert.rejects(l.next(), { code: 'LISTEN_CONNECTION_LOST' })
    await admin('SELECT pg_terminate_backend($1)', [l.pid])
    await ended
    await client.end().catch(() => {})
  })
})
