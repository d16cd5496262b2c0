// Regressions found in review of the toolkit: each test is named after what broke.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { AdvisoryLock } from '../src/advisory-lock.ts'
import { Database } from '../src/database.ts'
import { listen } from '../src/listen.ts'
import { withSettings } from '../src/settings.ts'
import { admin, cleanEnv, freshDatabase } from './helpers.ts'

describe('settings and locks inside a transaction', () => {
  test("withSettings and a timed advisory lock inside a transaction leave no SET LOCAL value on the pooled connection", async () => {
    const { url } = await freshDatabase('setlocal')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const before = (await db.query("SELECT current_setting('work_mem') AS w, current_setting('lock_timeout') AS l")).rows[0]
    await db.transaction(async (tx) => {
      await tx.query("SET LOCAL work_mem = '99MB'")
      assert.equal(await withSettings(tx, { work_mem: '1MB' }, async (c) => (await c.query('SHOW work_mem')).rows[0].work_mem), '1MB')
      assert.equal((await tx.query('SHOW work_mem')).rows[0].work_mem, '99MB')
      await tx.query("SET LOCAL lock_timeout = '7s'")
      const lock = (await db.advisoryLock('setlocal-key', { wait: 1000 }))!
      await lock.release()
    })
    const after = (await db.query("SELECT current_setting('work_mem') AS w, current_setting('lock_timeout') AS l")).rows[0]
    assert.deepEqual(after, before)
  })

  test('withSettings accepts a custom setting the session has never set (app.tenant)', async () => {
    const { url } = await freshDatabase('customguc')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    const seen = await db.withSettings({ 'app.tenant': '42' }, async (c) => (await c.query("SELECT current_setting('app.tenant') AS t")).rows[0].t)
    assert.equal(seen, '42')
  })

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
    assert.deepEqual(both.map((x) => x?.payload), first === both[0] ? ['one', undefined] : [undefined, 'one'])
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
