import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../src/database.ts'
import { PgcrewError } from '../src/errors.ts'
import { UndefinedObject } from '../src/database-error.ts'
import { settings, withSettings } from '../src/settings.ts'
import { cleanEnv, freshDatabase } from './helpers.ts'

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
        assert.deepEqual(await settings(tx).getMany(['work_mem', 'statement_timeout', 'enable_seqscan', 'pgcrew.note']),
          { work_mem: '8MB', statement_timeout: '1234ms', enable_seqscan: 'off', 'pgcrew.note': "it's" })
        await settings(tx).reset('work_mem')
        assert.equal(await settings(tx).get('work_mem'), '4MB')
        await settings(tx).reset('statement_timeout')
        await settings(tx).reset('enable_seqscan')
      })
    })

    it('withSettings overrides for the scope and restores after a throw', async () => {
      const seen = await withSettings(db, { work_mem: '64MB', search_path: 'pg_catalog' }, async (client) =>
        (await client.query('SHOW work_mem')).rows[0].work_mem)
      assert.equal(seen, '64MB')
      await assert.rejects(withSettings(db, { work_mem: '32MB' }, async (client) => {
        assert.equal((await client.query('SHOW work_mem')).rows[0].work_mem, '32MB')
        throw new Error('job failed')
      }), /job failed/)
      // max: 1 — in pooled mode this is the very connection the scopes used.
      await db.withClient(async (client) => {
        assert.equal((await client.query('SHOW work_mem')).rows[0].work_mem, '4MB')
        assert.equal((await client.query('SHOW search_path')).rows[0].search_path, '"$user", public')
      })
    })
  })
}
