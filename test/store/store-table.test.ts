import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { admin, cleanEnv, freshDatabase } from '../helpers.ts'

type Item = { id: number; name: string; qty: number | null; tags: string[] | null; info: unknown; created: Date }

const ITEMS = `CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, qty int, tags text[], info jsonb,
  created timestamptz NOT NULL DEFAULT now(), CONSTRAINT items_name UNIQUE (name))`

async function setup(prefix: string, pooling?: 'per-transaction') {
  const { url, dbname } = await freshDatabase(prefix)
  await admin(ITEMS, [], dbname)
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 4, pooling })
  const store = await openStore(db)
  return { db, store, url, dbname }
}

describe('store.table()', () => {
  for (const pooling of [undefined, 'per-transaction'] as const) {
    test(`add, find, get, getById, all, count, update, remove (${pooling ?? 'pooled'})`, async () => {
      const { db, store } = await setup('storecrud', pooling)
      await using _db = db
      const items = store.table<Item>('items')
      const a = await items.add({ name: 'apple', qty: 3, tags: ['red', 'fruit'], info: [1, 2] })
      assert.equal(a.id, 1)
      assert.ok(a.created instanceof Date, 'the default column comes back filled in')
      assert.deepEqual(a.tags, ['red', 'fruit'])
      assert.deepEqual(a.info, [1, 2], 'an array into a jsonb column stays a JSON array')
      await items.add({ name: 'pear', qty: null })
      await items.add({ name: 'plum', qty: 7 })
      assert.deepEqual(
        (await items.find({ qty: null })).map((r) => r.name),
        ['pear'],
      )
      assert.deepEqual(
        (await items.find({ name: ['plum', 'apple', 'kiwi'] }, { orderBy: 'name' })).map((r) => r.name),
        ['apple', 'plum'],
      )
      assert.deepEqual(
        (await items.find({ qty: [3, null] }, { orderBy: '-name' })).map((r) => r.name),
        ['pear', 'apple'],
      )
      assert.deepEqual(
        (await items.find({ tags: ['red', 'fruit'] })).map((r) => r.name),
        ['apple'],
        'an array for an array column is its value',
      )
      assert.deepEqual(
        (await items.find({}, { orderBy: ['name desc'], limit: 2, offset: 1 })).map((r) => r.name),
        ['pear', 'apple'],
      )
      assert.equal((await items.get({ name: 'plum' }))?.qty, 7)
      assert.equal(await items.get({ name: 'kiwi' }), undefined)
      await assert.rejects(items.get({}), { code: 'STORE_NOT_UNIQUE' })
      assert.equal((await items.getById(2))?.name, 'pear')
      assert.equal(await items.getById(99), undefined)
      assert.equal((await items.all()).length, 3)
      assert.equal(await items.count(), 3)
      assert.equal(await items.count({ qty: null }), 1)
      assert.deepEqual(
        (await items.update({ name: 'pear' }, { qty: 5 })).map((r) => r.qty),
        [5],
      )
      assert.equal(await items.remove({ name: ['pear', 'plum'] }), 2)
      await assert.rejects(items.remove({}), { code: 'INVALID_OPTION', message: /clear\(\)/ })
      assert.equal(await items.clear(), 1)
      assert.equal(await items.count(), 0)
      await store.close()
    })
  }

  test('where values are parameters, never SQL', async () => {
    const { db, store } = await setup('storeinject')
    await using _db = db
    const items = store.table<Item>('items')
    await items.add({ name: "x'; DROP TABLE items; --" })
    assert.equal((await items.find({ name: "x'; DROP TABLE items; --" })).length, 1)
    assert.equal(await items.count({ name: "' OR '1'='1" }), 0)
    assert.equal(await items.count(), 1, 'the table is still there')
  })

  test('unknown columns and tables are errors naming what there is', async () => {
    const { db, store } = await setup('storeunknown')
    await using _db = db
    const items = store.table<Item>('items')
    await assert.rejects(items.find({ nmae: 'x' } as never), (e: Error & { code: string; details: Record<string, unknown> }) => {
      assert.equal(e.code, 'STORE_UNKNOWN_COLUMN')
      assert.match(e.message, /items has no column "nmae" \(did you mean "name"\?\); its columns: id, name, qty, tags, info, created/)
      assert.deepEqual(e.details.unknown, ['nmae'])
      return true
    })
    await assert.rejects(items.add({ name: 'a', colour: 'red', size: 2 } as never), { code: 'STORE_UNKNOWN_COLUMN', message: /no columns "colour", "size"/ })
    await assert.rejects(items.find({}, { orderBy: 'nope' }), { code: 'STORE_UNKNOWN_COLUMN' })
    await assert.rejects(items.find({ name: undefined }), { code: 'STORE_INVALID_VALUE', message: /"name" is undefined; use null/ })
    await assert.rejects(store.table('itemz').all(), (e: Error & { code: string }) => {
      assert.equal(e.code, 'STORE_UNKNOWN_TABLE')
      assert.match(e.message, /no such table \(did you mean "items"\?\); tables here: .*items/)
      return true
    })
    // A table created after the failed lookup is found: the failure is not cached.
    await db.query('CREATE TABLE itemz (id serial PRIMARY KEY)')
    assert.deepEqual(await store.table('itemz').all(), [])
  })

  test('a value that cannot be stored is STORE_INVALID_VALUE naming the column', async () => {
    const { db, store } = await setup('storebadvalue')
    await using _db = db
    const items = store.table<Item>('items')
    await assert.rejects(items.add({ name: 'a', qty: 'many' as never }), (e: Error & { code: string; details: Record<string, unknown> }) => {
      assert.equal(e.code, 'STORE_INVALID_VALUE')
      assert.match(e.message, /items\.add\(\): cannot store the value of items\.qty \(integer\): invalid input syntax for type integer: "many"/)
      assert.equal(e.details.column, 'qty')
      return true
    })
    await assert.rejects(items.add({ name: 'a', qty: 2 ** 40 }), { code: 'STORE_INVALID_VALUE', message: /items\.qty \(integer\).*out of range/ })
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    await assert.rejects(items.add({ name: 'a', info: cyclic }), { code: 'STORE_INVALID_VALUE', message: /items\.info \(jsonb\) needs a value with a JSON form/ })
    await assert.rejects(items.add({ name: 'a', qty: (() => 1) as never }), { code: 'STORE_INVALID_VALUE', message: /cannot store a function/ })
    await assert.rejects(items.addMany([{ name: 'b' }, { name: 'c', qty: 'x' as never }]), { code: 'STORE_INVALID_VALUE' })
    assert.equal(await items.count(), 0, 'addMany is all or nothing')
    // A duplicate is an integrity error, kept as its own class (callers catch UniqueViolation).
    await items.add({ name: 'd' })
    await assert.rejects(items.add({ name: 'd' }), { code: '23505' })
  })

  test('addMany keeps input order, below and above the COPY threshold, and gives rows as add() does', async () => {
    const { db, store } = await setup('storemany')
    await using _db = db
    const copying = await openStore(db, { copyThreshold: 50 })
    for (const [s, label] of [
      [store, 'insert'],
      [copying, 'copy'],
    ] as const) {
      const items = s.table<Item>('items')
      await items.clear()
      const input = Array.from({ length: 120 }, (_, i) => ({ name: `${label}-${(i * 7919) % 120}`, qty: i, tags: [`t${i}`], info: { i, list: [i] } }))
      const rows = await items.addMany(input)
      assert.deepEqual(
        rows.map((r) => r.name),
        input.map((r) => r.name),
        `${label}: rows come back in input order`,
      )
      assert.deepEqual(rows[5]!.info, { i: 5, list: [5] })
      assert.deepEqual(rows[5]!.tags, ['t5'])
      assert.ok(rows.every((r) => r.created instanceof Date && typeof r.id === 'number'))
      assert.equal(new Set(rows.map((r) => r.id)).size, 120)
      assert.equal(await items.count(), 120)
    }
    // Rows with different columns: each leaves out what it does not name (its DEFAULT, not NULL).
    const mixed = await store.table<Item>('items').addMany([{ name: 'm1' }, { name: 'm2', qty: 1 }, { name: 'm3', created: new Date('2020-01-01T00:00:00Z') }])
    assert.deepEqual(
      mixed.map((r) => [r.name, r.qty, r.created.getUTCFullYear() === 2020]),
      [
        ['m1', null, false],
        ['m2', 1, false],
        ['m3', null, true],
      ],
    )
  })

  test('getOrCreate: 16 callers in 4 worker threads get one id, and one row exists', async () => {
    const { db, store, dbname } = await setup('storegoc')
    await using _db = db
    await using crew = await db.crew({ worker: new URL('../fixtures/workers/store.ts', import.meta.url), threads: 4 })
    const results = await Promise.all(Array.from({ length: 16 }, () => crew.run<{ id: number; workerId: number }>({ op: 'getOrCreate', schema: 'pgcrew', table: 'items', name: 'shared' })))
    assert.equal(new Set(results.map((r) => r.id)).size, 1, `ids: ${results.map((r) => r.id).join(', ')}`)
    assert.ok(new Set(results.map((r) => r.workerId)).size > 1, 'the callers ran in more than one thread')
    const rows = await admin<{ n: number }>("SELECT count(*)::int AS n FROM items WHERE name = 'shared'", [], dbname)
    assert.equal(rows[0]!.n, 1)
    const again = await store.getOrCreate<Item>('items', { name: 'shared' }, { qty: 9 })
    assert.equal(again.id, results[0]!.id)
    assert.equal(again.qty, null, 'an existing row is returned as it is, not updated')
    const created = await store.getOrCreate<Item>('items', { name: 'new' }, { qty: 9 })
    assert.equal(created.qty, 9)
    await assert.rejects(store.getOrCreate('items', { qty: 1 }), { code: 'STORE_NO_UNIQUE_KEY', message: /no unique constraint on \(qty\)/ })
    await assert.rejects(store.getOrCreate('items', { name: null }), { code: 'STORE_INVALID_VALUE' })
  })
})
