import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Database } from '../../src/database/database.ts'
import { cursor } from '../../src/toolkit/cursor.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

for (const pooling of ['pooled', 'per-transaction'] as const) {
  describe(`cursor (${pooling})`, () => {
    let db: Database
    before(async () => {
      const { url } = await freshDatabase('cursor')
      db = new Database({ connectionString: url, env: cleanEnv(), pooling })
    })
    after(() => db.close())

    it('reads with read(n) and reports the end', async () => {
      await using c = cursor<{ n: number }>(db, 'SELECT n FROM generate_series(1, $1::int) n', [5])
      assert.deepEqual(
        (await c.read(3)).map((r) => r.n),
        [1, 2, 3],
      )
      assert.deepEqual(
        (await c.read(3)).map((r) => r.n),
        [4, 5],
      )
      assert.equal(c.done, true)
      assert.deepEqual(await c.read(3), [])
    })

    it('closes on early break and gives the connection back', async () => {
      let seen = 0
      for await (const _ of cursor(db, 'SELECT n FROM generate_series(1, 100000) n', [], { batchSize: 100 })) if (++seen === 250) break
      assert.equal(seen, 250)
      assert.equal(db.connectionCount, pooling === 'pooled' ? 1 : 0)
      assert.equal((await db.query('SELECT 1 AS ok')).rows[0].ok, 1)
    })
  })
}

describe('cursor over 1,000,000 rows', () => {
  it('keeps memory flat', async () => {
    const { url } = await freshDatabase('cursorbig')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    gc()
    const base = process.memoryUsage().heapUsed
    let peak = 0
    let count = 0
    let sum = 0
    for await (const row of cursor<{ n: number; pad: string }>(db, "SELECT n, repeat('x', 100) AS pad FROM generate_series(1, 1000000) n", [], { batchSize: 2000 })) {
      count++
      sum += row.n
      if (count % 100000 === 0) {
        gc()
        peak = Math.max(peak, process.memoryUsage().heapUsed - base)
      }
    }
    assert.equal(count, 1_000_000)
    assert.equal(sum, 500000500000)
    // Holding the rows would take well over 150 MB; a cursor holds one batch.
    assert.ok(peak < 30 * 1024 * 1024, `heap grew by ${Math.round(peak / 1048576)} MB`)
  })
})
