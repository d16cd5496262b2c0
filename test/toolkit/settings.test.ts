import { after, before, describe, it, test } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { UndefinedObject } from '../../src/errors/database-error.ts'
import { settings, withSettings } from '../../src/toolkit/settings.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`settings (${pooling})`, () => {
    let db: Database
    before(async () => {
      const { url } = await freshDatabase('settings')
      db = new Database({ connectionString: url, env: cleanEnv(), pooling, max: 1 })
      await db.connect()
    })
    after(() => db.close())

    it('reads one or many settings as SHOW prints them', async () => {
      assert.equal(await settings(db).get('work_mem'), '4MB')
      assert.deepEqual(await settings(db).getMany(['work_mem', 'DateStyle']), { work_mem: '4MB', DateStyle: 'ISO, MDY' })
      await assert.rejects(settings(db).get('no_such_setting'), UndefinedObject)
    })

    it('set/setMany/reset on a transaction; refuses set on a whole Database', async () => {
      await assert.rejects(settings(db).set('work_mem', '8MB'), (e: unknown) => e instanceof PgcrewError && e.code === 'SETTINGS_NEED_CONNECTION')
      await db.transaction(async (tx) => {
        await settings(tx).set('work_mem', '8MB')
        await settings(tx).setMany({ statement_timeout: 1234, enable_seqscan: false, 'pgcrew.note': "it's" })
        assert.deepEqual(await settings(tx).getMany(['work_mem', 'statement_timeout', 'enable_seqscan', 'pgcrew.note']), {
          work_mem: '8MB',
          statement_timeout: '1234ms',
          enable_seqscan: 'off',
          'pgcrew.note': "it's",
        })
        await settings(tx).reset('work_mem')
        assert.equal(await settings(tx).get('work_mem'), '4MB')
        await settings(tx).reset('statement_timeout')
        await settings(tx).reset('enable_seqscan')
      })
    })

    it('withSettings overrides for the scope and restores after a throw', async () => {
      const seen = await withSettings(db, { work_mem: '64MB', search_path: 'pg_catalog' }, async (client) => (await client.query('SHOW work_mem')).rows[0].work_mem)
      assert.equal(seen, '64MB')
      await assert.rejects(
        withSettings(db, { work_mem: '32MB' }, async (client) => {
          assert.equal((await client.query('SHOW work_mem')).rows[0].work_mem, '32MB')
          throw new Error('job failed')
        }),
        /job failed/,
      )
      // max: 1 — in pooled mode this is the very connection the scopes used.
      await db.withClient(async (client) => {
        assert.equal((await client.query('SHOW work_mem')).rows[0].work_mem, '4MB')
        assert.equal((await client.query('SHOW search_path')).rows[0].search_path, '"$user", public')
      })
    })
  })
}

describe('settings and locks inside a transaction', () => {
  test('withSettings and a timed advisory lock inside a transaction leave no SET LOCAL value on the pooled connection', async () => {
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
})
