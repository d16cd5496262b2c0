import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { admin, cleanEnv, freshDatabase } from '../helpers.ts'

// addMany's COPY path (store-copy.ts): every value COPY text must escape, or that node-postgres
// parses into something other than a string, goes in through COPY and comes back through COPY … TO
// exactly as the INSERT path (parameters, a result's rows) stores and returns it.
const EDGE = `CREATE TABLE edge (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t text, j jsonb, js json, at timestamptz, d date, b bytea, n bigint,
  f float8, ok boolean, tags text[], note varchar(10), made timestamptz NOT NULL DEFAULT now())`

const LONG = 'long ünï 日本 🎉\t\\ '.repeat(5000)
const VALUES: Record<string, unknown[]> = {
  t: ['', 'plain', 'tab\there', 'new\nline', 'cr\rhere', 'back\\slash', '\\N', '\\.', 'end\\', 'ünï 日本 🎉', null, LONG, `quote'"`, '\b\f\v control', ' lead and trail '],
  j: [{ a: 'tab\t', b: 'nl\n', c: 'bs\\', d: [1, null, 'x'] }, 'a string', [1, 2], null, 0, { emoji: '🎉', nested: { deep: '\\N' } }, true],
  js: [{ keep: 'as  written', n: 1.5 }, null, ['\t']],
  at: [new Date('2026-01-02T03:04:05.678Z'), null, new Date(0), '2026-06-01T00:00:00+02:00', new Date('1999-12-31T23:59:59.999Z')],
  d: ['2026-01-02', null, '1970-01-01'],
  b: [Buffer.from([0, 92, 9, 10, 13, 255]), Buffer.alloc(0), null, Buffer.from('\\x41')],
  n: ['9007199254740993', -5, null, 0, '-9223372036854775808'],
  f: [0.1, -0, Number.NaN, 1e300, Number.POSITIVE_INFINITY, null, 5e-324, 1 / 3],
  ok: [true, false, null],
  tags: [['a,b', 'q"uote', 'back\\', 'tab\t', null, '', 'NULL'], [], null, ['{braces}']],
  note: ['trail   ', 'ten chars!', null, 'tab\t'],
}
const ROWS = Array.from({ length: 60 }, (_, i) => Object.fromEntries(Object.entries(VALUES).map(([k, vs]) => [k, vs[(i * 7 + k.length) % vs.length]])))
const stored = (rows: Array<Record<string, unknown>>) => rows.map(({ id: _id, made: _made, ...rest }) => rest)

async function setup(prefix: string, sql: string, pooling?: 'per-transaction') {
  const { url, dbname } = await freshDatabase(prefix)
  await admin(sql, [], dbname)
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 4, pooling })
  return { db, copying: await openStore(db, { copyThreshold: 1 }), inserting: await openStore(db, { copyThreshold: Number.MAX_SAFE_INTEGER }) }
}

describe('store addMany through COPY', () => {
  for (const pooling of [undefined, 'per-transaction'] as const) {
    test(`escapes, NULLs, JSON, times, bytea, arrays round-trip as the INSERT path stores them (${pooling ?? 'pooled'})`, async () => {
      const { db, copying, inserting } = await setup('storecopyedge', EDGE, pooling)
      await using _db = db
      const viaInsert = await inserting.table('edge').addMany(ROWS)
      const viaCopy = await copying.table('edge').addMany(ROWS)
      assert.deepEqual(stored(viaCopy), stored(viaInsert), 'COPY stores and returns what the INSERT path does')
      assert.equal(viaCopy.filter((r) => r.t === LONG).length, ROWS.filter((r) => r.t === LONG).length, 'a value longer than a COPY chunk comes back whole')
      assert.ok(ROWS.some((r) => r.t === LONG))
      // Rows read back through COPY … TO are the rows a query returns, ids and defaults included.
      assert.deepEqual(viaCopy, await copying.table('edge').find({ id: viaCopy.map((r) => r.id) }, { orderBy: 'id' }))
      assert.ok(viaCopy.every((r) => r.made instanceof Date && r.made.getTime() === (viaCopy[0]!.made as Date).getTime()))
      assert.notEqual(viaCopy[0]!.made, viaCopy[1]!.made, 'each row has a Date of its own')
      await copying.table('edge').clear()
      assert.equal(await copying.table('edge').addMany(ROWS, { returning: false }), ROWS.length)
      assert.deepEqual(stored(await copying.table('edge').all({ orderBy: 'id' })), stored(viaInsert), '{ returning: false } stores the same values')
    })
  }

  test('rows naming their primary key come back in input order, matched by the key as stored', async () => {
    const { db, copying } = await setup('storecopykey', 'CREATE TABLE keyed (id uuid PRIMARY KEY, v int NOT NULL, made timestamptz NOT NULL DEFAULT now())')
    await using _db = db
    const input = Array.from({ length: 50 }, (_, i) => ({ id: `${String((i * 37) % 50).padStart(8, '0')}-AAAA-4BBB-8CCC-DDDDDDDDDDDD`, v: i }))
    const rows = await copying.table<{ id: string; v: number; made: Date }>('keyed').addMany(input)
    assert.deepEqual(
      rows.map((r) => r.v),
      input.map((r) => r.v),
    )
    assert.equal(rows[3]!.id, input[3]!.id.toLowerCase(), 'the key as stored')
  })

  test('ids from a sequence that skips: rows still come back in input order', async () => {
    const { db, copying } = await setup('storecopystep', 'CREATE TABLE stepped (id int GENERATED ALWAYS AS IDENTITY (INCREMENT BY 3) PRIMARY KEY, v int NOT NULL)')
    await using _db = db
    const table = copying.table<{ id: number; v: number }>('stepped')
    // 150 runs of one id each: more than the read back names one by one in its query; 15: named so.
    for (const count of [150, 15]) {
      const input = Array.from({ length: count }, (_, i) => ({ v: (i * 7919) % count }))
      const rows = await table.addMany(input)
      assert.deepEqual(
        rows.map((r) => r.v),
        input.map((r) => r.v),
        `${count} rows`,
      )
      assert.equal(new Set(rows.map((r) => r.id)).size, count)
    }
    assert.equal(await table.count(), 165)
  })

  test('a bad value leaves nothing, alone or inside a transaction', async () => {
    const { db, copying } = await setup('storecopyfail', 'CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int)')
    await using _db = db
    const items = copying.table<{ id: number; name: string; qty: number | null }>('items')
    const input = Array.from({ length: 150 }, (_, i) => ({ name: `n${i}`, qty: i === 120 ? ('x' as never) : i }))
    await assert.rejects(items.addMany(input), { code: 'STORE_INVALID_VALUE', message: /cannot store the value/ })
    assert.equal(await items.count(), 0)
    const good = input.map((r, i) => ({ ...r, qty: i }))
    await assert.rejects(
      db.transaction(async () => {
        const rows = await items.addMany(good)
        assert.equal(rows.length, 150)
        assert.equal(await items.count(), 150, 'the rows are there inside the transaction')
        throw new Error('changed my mind')
      }),
      /changed my mind/,
    )
    assert.equal(await items.count(), 0, 'the transaction rolled the COPY back')
    assert.deepEqual(
      (await db.transaction(() => items.addMany(good))).map((r) => r.qty),
      good.map((r) => r.qty),
    )
    assert.equal(await items.count(), 150)
  })

  test('a parser that throws while rows are read back: the error, and the connection still works', { timeout: 60_000 }, async () => {
    const { url, dbname } = await freshDatabase('storecopyparse')
    await admin('CREATE TABLE macs (id serial PRIMARY KEY, mac macaddr NOT NULL)', [], dbname)
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const macs = (await openStore(db, { copyThreshold: 1 })).table('macs')
    const input = Array.from({ length: 30000 }, (_, i) => ({ mac: `08:00:2b:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` }))
    pg.types.setTypeParser(829, () => {
      throw new Error('this parser refuses')
    })
    try {
      await assert.rejects(macs.addMany(input), /this parser refuses/)
    } finally {
      pg.types.setTypeParser(829, (text: string) => text)
    }
    // The rest of the COPY was read off the connection (the only one): the next statements run on it.
    assert.equal(await macs.count(), 0, 'the failed addMany left nothing')
    // 30,000 rows: three slices, each read back while the next is stored; in input order all through.
    assert.deepEqual(
      (await macs.addMany(input)).map((r) => r.mac),
      input.map((r) => r.mac),
    )
  })
})
