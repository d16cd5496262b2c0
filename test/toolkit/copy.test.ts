import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import { Database } from '../../src/database/database.ts'
import { CheckViolation, UniqueViolation } from '../../src/errors/database-error.ts'
import { copyFrom, copyTo } from '../../src/toolkit/copy.ts'
import { copyTransfer } from '../../src/toolkit/copy-transfer.ts'
import { ensureLedger, markDone } from '../../src/pipeline/pipeline-ledger.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

describe('COPY', () => {
  let src: Database
  let good: Database
  let strict: Database
  before(async () => {
    const open = async (p: string) => new Database({ connectionString: (await freshDatabase(p)).url, env: cleanEnv() })
    ;[src, good, strict] = [await open('copysrc'), await open('copygood'), await open('copystrict')]
    await src.query('CREATE TABLE "Events" (id int, kind text, at timestamptz, meta jsonb)')
    await good.query('CREATE TABLE events (id int, kind text, at timestamptz, meta jsonb)')
    await strict.query("CREATE SCHEMA stage; CREATE TABLE stage.events (id int PRIMARY KEY, kind text CHECK (kind <> 'bad'), at timestamptz, meta jsonb)")
  })
  after(async () => {
    await src.close()
    await good.close()
    await strict.close()
  })

  it('copyFrom rows (with awkward values) and copyTo them back', async () => {
    const at = new Date('2024-01-02T03:04:05Z')
    const rows = [
      [1, 'tab\there', at, { a: 1 }],
      [2, 'line\nbreak \\ back', null, null],
      [3, 'bad', at, { b: [1, 2] }],
    ]
    assert.deepEqual(await copyFrom(src, 'Events', rows), { rows: 3 })
    const back = (await src.query('SELECT id, kind, at, meta FROM "Events" ORDER BY id')).rows
    assert.deepEqual(back, [
      { id: 1, kind: 'tab\there', at, meta: { a: 1 } },
      { id: 2, kind: 'line\nbreak \\ back', at: null, meta: null },
      { id: 3, kind: 'bad', at, meta: { b: [1, 2] } },
    ])
    const csv = await text(copyTo(src, 'SELECT id, kind FROM "Events" ORDER BY id', { format: 'csv' }))
    assert.equal(csv, '1,tab\there\n2,"line\nbreak \\ back"\n3,bad\n')
    assert.deepEqual(await copyFrom(good, 'events', Readable.from(['10\tcsv\n']), { columns: ['id', 'kind'] }), { rows: 1 })
    await good.query('DELETE FROM events')
  })

  it('a failing copyFrom is typed and stores nothing', async () => {
    await assert.rejects(
      copyFrom(
        strict,
        ['stage', 'events'],
        [
          [1, 'a', null, null],
          [1, 'b', null, null],
        ],
      ),
      UniqueViolation,
    )
    assert.equal((await strict.query('SELECT count(*)::int AS n FROM stage.events')).rows[0].n, 0)
  })

  it("'schema.table' names one table for copyFrom, copyTransfer and the ledger; a dot meant literally is written as parts", async () => {
    await strict.query('CREATE SCHEMA catalog; CREATE TABLE catalog.targets (id int, name text); CREATE TABLE public."catalog.targets" (id int, name text)')
    assert.deepEqual(
      await copyFrom(strict, 'catalog.targets', [
        [1, 'a'],
        [2, 'b'],
      ]),
      { rows: 2 },
    )
    assert.deepEqual(await strict.copyFrom('catalog.targets', [[3, 'c']]), { rows: 1 })
    const [moved] = await copyTransfer(strict, 'SELECT * FROM catalog.targets', [[strict, 'catalog.targets']])
    assert.deepEqual([moved?.table, moved?.ok, moved?.rows], ['"catalog"."targets"', true, 3])
    assert.equal((await strict.query('SELECT count(*)::int AS n FROM catalog.targets')).rows[0].n, 6)
    assert.deepEqual(await copyFrom(strict, ['catalog.targets'], [[9, 'literal']]), { rows: 1 })
    assert.deepEqual((await strict.query('SELECT id FROM public."catalog.targets"')).rows, [{ id: 9 }])
    // The ledger reads its option the same way: case kept, split at the dot.
    await ensureLedger(strict, 'catalog.Ledger')
    await strict.transaction((tx) => markDone(tx, 'catalog.Ledger', 'names', 'k1', 1, 1, 'here'))
    assert.deepEqual(await copyFrom(strict, 'catalog.Ledger', [['names', 'k2', 'done', 1, 1, null, null, null, '2024-01-01T00:00:00Z']]), { rows: 1 })
    assert.deepEqual((await strict.query('SELECT key FROM catalog."Ledger" ORDER BY key')).rows, [{ key: 'k1' }, { key: 'k2' }])
  })

  it('a malformed table name is refused before anything is sent, naming the name and the forms', async () => {
    for (const bad of ['', 'a.b.c', '.events', 'stage.', '"Events"', 'x'.repeat(64), ['stage', 'events', 'x'], []]) {
      await assert.rejects(copyFrom(good, bad, [[1]]), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'INVALID_TABLE_NAME', `${JSON.stringify(bad)}: ${error.message}`)
        assert.match(error.message, /^copyFrom table .* write "table" or "schema\.table", or the parts \['schema', 'table'\] for a name with a dot or quote in it$/)
        return true
      })
    }
    await assert.rejects(
      copyTransfer(src, 'SELECT 1', [
        [good, 'events'],
        [good, 'a..b'],
      ]),
      { code: 'INVALID_TABLE_NAME', message: /^copyTransfer target table "a\.\.b" has an empty part/ },
    )
    assert.equal((await good.query('SELECT count(*)::int AS n FROM events')).rows[0].n, 0, 'the first target started no COPY')
  })

  it('copyTransfer into two targets: one violates a constraint, the other finishes', async () => {
    await src.query("INSERT INTO \"Events\" SELECT n, 'bulk', now(), '{}' FROM generate_series(100, 20099) n")
    const [ok, failed] = await copyTransfer(src, 'SELECT * FROM "Events" ORDER BY id', [[good, 'events'], { target: strict, table: ['stage', 'events'] }])
    assert.deepEqual([ok?.table, ok?.ok, ok?.rows], ['"events"', true, 20003])
    assert.ok(ok!.bytes > 0)
    assert.deepEqual([failed?.table, failed?.ok, failed?.rows], ['"stage"."events"', false, 0])
    assert.ok(failed?.error instanceof CheckViolation, String(failed?.error))
    assert.equal((await good.query('SELECT count(*)::int AS n FROM events')).rows[0].n, 20003)
    assert.equal((await strict.query('SELECT count(*)::int AS n FROM stage.events')).rows[0].n, 0)
    // Every connection went back healthy.
    for (const d of [src, good, strict]) assert.equal((await d.query('SELECT 1 AS ok')).rows[0].ok, 1)
  })
})
