// The toolkit reached the way the README shows it: as methods of a Database, in both pooling modes.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`Database toolkit methods (${pooling})`, () => {
    test('settings, prepare, cursor, copyFrom/copyTo, advisory locks and LISTEN/NOTIFY work through db.*', async () => {
      const { url } = await freshDatabase('toolkit')
      await using db = new Database({ connectionString: url, env: cleanEnv(), pooling })
      await db.query('CREATE TABLE t (id int PRIMARY KEY, name text)')

      assert.equal(await db.settings.get('DateStyle'), 'ISO, MDY')
      assert.equal(await db.withSettings({ work_mem: '77MB' }, async (c) => (await c.query('SHOW work_mem')).rows[0].work_mem), '77MB')

      assert.deepEqual(
        await db.copyFrom('t', [
          [1, 'a'],
          [2, 'b'],
          [3, 'c'],
        ]),
        { rows: 3 },
      )
      const stmt = await db.prepare('SELECT id, name FROM t WHERE id = $1')
      assert.deepEqual(stmt.columnNames, ['id', 'name'])
      assert.equal((await stmt.rows([2]))[0].name, 'b')

      const ids: number[] = []
      for await (const row of db.cursor<{ id: number }>('SELECT id FROM t ORDER BY id', [], { batchSize: 2 })) ids.push(row.id)
      assert.deepEqual(ids, [1, 2, 3])

      let copied = ''
      for await (const chunk of db.copyTo('SELECT id, name FROM t ORDER BY id')) copied += chunk
      assert.equal(copied, '1\ta\n2\tb\n3\tc\n')

      assert.equal(await db.withAdvisoryLock('toolkit-test', async () => 'locked'), 'locked')

      const listener = await db.listen('MixedCase')
      await db.notify('MixedCase', 'hello')
      const n = await listener.next()
      assert.equal(n?.payload, 'hello')
      assert.equal(n?.channel, 'MixedCase')
      // Left open on purpose: closing the Database must close it rather than wait forever.
    })

    test('regression: close() does not hang on a listener the caller forgot to close', async () => {
      const { url } = await freshDatabase('toolkitclose')
      const db = new Database({ connectionString: url, env: cleanEnv(), pooling })
      await db.listen('forgotten')
      await db.close()
      assert.equal(db.connected, false)
    })
  })
}
