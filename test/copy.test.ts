import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import { Database } from '../src/database.ts'
import { CheckViolation, UniqueViolation } from '../src/database-error.ts'
import { copyFrom, copyTo } from '../src/copy.ts'
import { copyTransfer } from '../src/copy-transfer.ts'
import { cleanEnv, freshDatabase } from './helpers.ts'

describe('COPY', () => {
  let src: Database
  let good: Database
  let strict: Database
  before(async () => {
    const open = async (p: string) => new Database({ connectionString: (await freshDatabase(p)).url, env: cleanEnv() })
    ;[src, good, strict] = [await open('copysrc'), await open('copygood'), await open('copystrict')]
    await src.query('CREATE TABLE "Events" (id int, kind text, at timestamptz, meta jsonb)')
    await good.query('CREATE TABLE events (id int, kind text, at timestamptz, meta jsonb)')
    await strict.query('CREATE SCHEMA stage; CREATE TABLE stage.events (id int PRIMARY KEY, kind text CHECK (kind <> \'bad\'), at timestamptz, meta jsonb)')
  })
  after(async () => { await src.close(); await good.close(); await strict.close() })

  it('copyFrom rows (with awkward values) and copyTo them back', async () => {
    const at = new Date('2024-01-02T03:04:05Z')
    const rows = [[1, 'tab\there', at, { a: 1 }], [2, 'line\nbreak \\ back', null, null], [3, 'bad', at, { b: [1, 2] }]]
    assert.deepEqual(await copyFrom(src, 'Events', rows), { rows: 3 })
    const back = (await src.query('SELECT id, kind, at, meta FROM "Events" ORDER BY id')).rows
    assert.deepEqual(back, [{ id: 1, kind: 'tab\there', at, meta: { a: 1 } }, { id: 2, kind: 'line\nbreak \\ back', at: null, meta: null }, { id: 3, kind: 'bad', at, meta: { b: [1, 2] } }])
    const csv = await text(copyTo(src, 'SELECT id, kind FROM "Events" ORDER BY id', { format: 'csv' }))
    assert.equal(csv, '1,tab\there\n2,"line\nbreak \\ back"\n3,bad\n')
    assert.deepEqual(await copyFrom(good, 'events', Readable.from(['10\tcsv\n']), { columns: ['id', 'kind'] }), { rows: 1 })
    await good.query('DELETE FROM events')
  })

  it('a failing copyFrom is typed and stores nothing', async () => {
    await assert.rejects(copyFrom(strict, ['stage', 'events'], [[1, 'a', null, null], [1, 'b', null, null]]), UniqueViolation)
    assert.equal((await strict.query('SELECT count(*)::int AS n FROM stage.events')).rows[0].n, 0)
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
