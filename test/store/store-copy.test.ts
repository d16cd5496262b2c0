import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { admin, cleanEnv, eventually, freshDatabase } from '../helpers.ts'

// addMany's COPY path (store-copy.ts): every value COPY text must escape, or that node-postgres
// parses into something other than a string, goes in through COPY and comes back through COPY … TO
// exactly as the INSERT path (parameters, a result's rows) stores and returns it.
const EDGE = `CREATE TABLE edge (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t text, j jsonb, js json, at timestamptz, d date, b bytea, n bigint,
  f float8, ok boolean, tags text[], note varchar(10), made timestamptz NOT NULL DEFAULT now())`

const LONG = 'long ünï 日本 🎉\t\\ '.repeat(5000)
const VALUES: Record<string, unknown[]> = {
  t: ['', 'plain', 'lone \uD83D surrogate', 'tab\there', 'new\nline', 'cr\rhere', 'back\\slash', '\\N', '\\.', 'end\\', 'ünï 日本 🎉', null, LONG, `quote'"`, '\b\f\v control', ' lead and trail '],
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

  test('the backend killed while addMany streams its COPY: an error, nothing stored, the next addMany works on a new connection', { timeout: 60_000 }, async () => {
    const { url, dbname } = await freshDatabase('storecopykill')
    await admin('CREATE TABLE logged (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL DEFAULT now())', [], dbname)
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1, applicationName: 'storecopykill' })
    const logged = (await openStore(db, { copyThreshold: 1 })).table<{ id: string; name: string; at: Date }>('logged')
    const input = Array.from({ length: 300000 }, (_, i) => ({ name: `row ${i} `.repeat(8) }))
    // The kill reads pg_stat_activity, then signals: on a loaded machine the COPY can finish and
    // addMany commit in between (or end between two polls). Then every row it returned must be
    // stored, and the kill is tried again on a new addMany until one lands during the COPY.
    let stored = 0
    let killedDuringCopy = false
    for (let attempt = 1; attempt <= 4 && !killedDuringCopy; attempt++) {
      // Its outcome is awaited below; handled from the start, as the kill may come first.
      let settled = false
      const outcome = logged.addMany(input).then(
        (rows) => ((settled = true), { resolved: rows.length }),
        (error: unknown) => ((settled = true), { error }),
      )
      // Until the kill is sent, or addMany ended before a poll saw its COPY.
      assert.ok(
        await eventually(async () => {
          if (settled) return true
          const killed = await admin<{ ok: boolean }>(
            `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND application_name = 'storecopykill' AND state = 'active' AND query LIKE 'COPY%'`,
            [dbname],
          )
          return killed.length > 0
        }, 20_000),
        'neither the COPY was seen running nor addMany ended',
      )
      const ended = await outcome
      if ('resolved' in ended) {
        // The signal came after the COMMIT, or no poll saw the COPY: what addMany returned is what the table gained.
        stored += ended.resolved
        assert.equal(await logged.count(), stored, 'rows addMany returned are stored')
        continue
      }
      killedDuringCopy = true
      assert.ok(ended.error instanceof Error)
      assert.equal(await logged.count(), stored, 'the killed addMany left nothing')
    }
    assert.ok(killedDuringCopy, 'in 4 tries the kill never landed while the COPY ran')
    await admin('TRUNCATE logged', [], dbname)
    const rows = await logged.addMany(input.slice(0, 5000))
    assert.deepEqual(
      rows.map((r) => r.name),
      input.slice(0, 5000).map((r) => r.name),
    )
    assert.equal(await logged.count(), 5000)
  })

  test('a parser that throws on a value the client sent (rows built while the COPY streams): the error, nothing stored, the connection still works', async () => {
    const { url, dbname } = await freshDatabase('storecopyparsesent')
    await admin('CREATE TABLE nums (id serial PRIMARY KEY, n int NOT NULL)', [], dbname)
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const nums = (await openStore(db, { copyThreshold: 1 })).table<{ id: number; n: number }>('nums')
    const input = Array.from({ length: 20000 }, (_, i) => ({ n: i }))
    const int4 = pg.types.getTypeParser(23)
    pg.types.setTypeParser(23, (text: string) => {
      if (text === '15000') throw new Error('this parser refuses 15000')
      return Number(text)
    })
    try {
      await assert.rejects(nums.addMany(input), /this parser refuses 15000/)
    } finally {
      pg.types.setTypeParser(23, int4)
    }
    assert.equal(await nums.count(), 0, 'the failed addMany left nothing')
    assert.deepEqual(
      (await nums.addMany(input)).map((r) => r.n),
      input.map((r) => r.n),
    )
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

  // Rows come back without reading back what the client sent when it can tell the server's text for
  // it; each case below would differ from the stored row if that judgement were wrong.
  describe('rows as stored, read back only where the server decided', () => {
    type Loose = Record<string, unknown>
    async function asStored(db: Database, table: string, rows: Loose[]): Promise<void> {
      const ids = rows.map((r) => r.id)
      const { rows: stored } = await db.query<Loose>(`SELECT * FROM ${table} WHERE id = ANY ($1) ORDER BY id`, [ids])
      assert.equal(stored.length, rows.length, 'every returned row is in the table')
      assert.deepEqual(rows, stored, 'the rows returned are the rows stored, in input order')
    }

    test('a BEFORE INSERT trigger that changes a value: the row as the trigger left it', async () => {
      const { db, copying } = await setup(
        'storecopytrig',
        `CREATE TABLE shout (id serial PRIMARY KEY, name text NOT NULL, n int NOT NULL);
         CREATE FUNCTION shout_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := upper(NEW.name); NEW.n := NEW.n * 10; RETURN NEW; END $$;
         CREATE TRIGGER shout_up BEFORE INSERT ON shout FOR EACH ROW EXECUTE FUNCTION shout_up()`,
      )
      await using _db = db
      const rows = await copying.table<Loose>('shout').addMany(Array.from({ length: 50 }, (_, i) => ({ name: `n${i}`, n: i })))
      assert.equal(rows[3]!.name, 'N3')
      assert.equal(rows[3]!.n, 30)
      await asStored(db, 'shout', rows)
    })

    test('another session drawing ids meanwhile, and a default drawing from the same sequence: ids as stored', async () => {
      const { db, copying } = await setup('storecopydraw', `CREATE TABLE drawn (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v int NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
      await using _db = db
      await admin(`ALTER TABLE drawn ADD COLUMN also bigint DEFAULT nextval(pg_get_serial_sequence('drawn', 'id'))`, [], (await db.query<{ d: string }>('SELECT current_database() AS d')).rows[0]!.d)
      const table = (await openStore(db, { copyThreshold: 1 })).table<Loose>('drawn')
      // Each row draws two ids (its key and "also"): the keys skip, so they are read back.
      const input = Array.from({ length: 300 }, (_, i) => ({ v: i }))
      const rows = await table.addMany(input)
      assert.deepEqual(
        rows.map((r) => r.v),
        input.map((r) => r.v),
      )
      assert.ok(
        rows.every((r) => BigInt(r.also as string) === BigInt(r.id as string) + 1n),
        'each row drew its key, then "also"',
      )
      await asStored(db, 'drawn', rows)
      // Inside a transaction (addMany a savepoint of it) that wrote rows before: the same rows found.
      const inside = await db.transaction(async () => {
        await table.addMany(input.slice(0, 40))
        await db.query('INSERT INTO drawn (v) VALUES (-1)')
        return table.addMany(input)
      })
      assert.deepEqual(
        inside.map((r) => r.v),
        input.map((r) => r.v),
      )
      await asStored(db, 'drawn', inside)
      // Two batches at once on two connections, each drawing while the other does.
      await db.query(`ALTER TABLE drawn DROP COLUMN also`)
      const other = (await openStore(db, { copyThreshold: 1 })).table<Loose>('drawn')
      for (let round = 0; round < 3; round++) {
        const a = Array.from({ length: 20000 }, (_, i) => ({ v: i }))
        const b = Array.from({ length: 20000 }, (_, i) => ({ v: -1 - i }))
        const [ra, rb] = await Promise.all([copying.table<Loose>('drawn').addMany(a), other.addMany(b)])
        assert.deepEqual(
          ra.map((r) => r.v),
          a.map((r) => r.v),
        )
        assert.deepEqual(
          rb.map((r) => r.v),
          b.map((r) => r.v),
        )
        await asStored(db, 'drawn', ra)
        await asStored(db, 'drawn', rb)
      }
    })

    test('defaults the server decides per row, or the same for a few runs of rows', async () => {
      const { db, copying } = await setup(
        'storecopyvolatile',
        `CREATE TABLE ticks (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
           who text DEFAULT current_setting('application_name'), twice int GENERATED ALWAYS AS (v * 2) STORED)`,
      )
      await using _db = db
      const rows = await copying.table<Loose>('ticks').addMany(Array.from({ length: 2000 }, (_, i) => ({ v: i % 7 })))
      assert.ok(new Set(rows.map((r) => (r.at as Date).getTime())).size > 1, 'clock_timestamp() differs between rows')
      assert.equal(rows[5]!.twice, 10)
      await asStored(db, 'ticks', rows)
      const few = await copying.table<Loose>('ticks').addMany(Array.from({ length: 100 }, (_, i) => ({ v: 1, at: new Date(Date.UTC(2026, 0, 1 + Math.floor(i / 30))) })))
      assert.equal(new Set(few.map((r) => (r.at as Date).getTime())).size, 4)
      await asStored(db, 'ticks', few)
    })

    test('floats under extra_float_digits = 0, a bigint parser of the caller, values the server rewrites', async () => {
      const { url, dbname } = await freshDatabase('storecopyknown')
      await admin(
        `CREATE TABLE known (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, f float8, n bigint, t text, u uuid, ok boolean, v varchar(3), at timestamptz DEFAULT now(), tag text DEFAULT 'x')`,
        [],
        dbname,
      )
      const input = [
        { f: 0.1 + 0.2, n: '007', t: 'a', u: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', ok: 'yes', v: 'ab   ' },
        { f: 1e-5, n: 42, t: 'b', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ok: true, v: 'abc' },
        { f: -0, n: ' 5', t: 'c', u: null, ok: false, v: null },
      ]
      for (const digits of [0, 1]) {
        await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2, options: `-c extra_float_digits=${digits}` })
        const known = (await openStore(db, { copyThreshold: 1 })).table<Loose>('known')
        // Floats JavaScript and the server write alike (the edge values above make the column the server's to tell).
        const plain = await known.addMany([{ f: 0.1 + 0.2 }, { f: 123.456 }, { f: 0 }])
        await asStored(db, 'known', plain)
        assert.equal(plain[0]!.f, digits === 0 ? 0.3 : 0.1 + 0.2, `extra_float_digits = ${digits}`)
        await asStored(db, 'known', await known.addMany(input))
      }
      await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
      const store = await openStore(db, { copyThreshold: 1 })
      pg.types.setTypeParser(20, (text: string) => BigInt(text))
      // A parser that keeps the server's text sees "1e-05" where JavaScript writes "0.00001".
      const float8 = pg.types.getTypeParser(701)
      pg.types.setTypeParser(701, (text: string) => text)
      try {
        const rows = await store.table<Loose>('known').addMany(input)
        assert.equal(typeof rows[0]!.id, 'bigint', "the caller's parser makes the ids")
        assert.equal(rows[1]!.n, 42n)
        assert.equal(rows[1]!.f, '1e-05')
        await asStored(db, 'known', rows)
        await asStored(db, 'known', await store.table<Loose>('known').addMany([{ f: 1e-5 }, { f: 2e15 }, { f: 0.5 }]))
      } finally {
        pg.types.setTypeParser(20, (text: string) => text)
        pg.types.setTypeParser(701, float8)
      }
    })
  })
})

// Found by a review of the change that builds rows from what was sent: each returned rows that
// differed from the stored ones (or failed) before it was fixed.
type Row = Record<string, unknown>

async function tableWith(prefix: string, sql: string, pooling?: 'per-transaction', options?: string) {
  const { url, dbname } = await freshDatabase(prefix)
  await admin(sql, [], dbname)
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 4, pooling, options })
  return { db, dbname, copying: await openStore(db, { copyThreshold: 1 }) }
}

async function storedAs(db: Database, table: string, rows: Row[]): Promise<void> {
  const { rows: stored } = await db.query<Row>(`SELECT * FROM ${table} WHERE id = ANY ($1) ORDER BY id`, [rows.map((r) => r.id)])
  assert.equal(stored.length, rows.length, 'every returned row is in the table')
  assert.deepEqual(rows, stored, 'the rows returned are the rows stored, in input order')
}

describe('addMany through COPY returns the rows as stored when the table or transaction does more than store them', () => {
  for (const pooling of [undefined, 'per-transaction'] as const) {
    const mode = pooling ?? 'pooled'

    test(`an AFTER INSERT row trigger that updates the new row (${mode})`, async () => {
      const { db, copying } = await tableWith(
        'rvafter',
        `CREATE TABLE slugged (id serial PRIMARY KEY, name text NOT NULL, slug text);
         CREATE FUNCTION slug_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE slugged SET slug = lower(NEW.name) WHERE id = NEW.id; RETURN NULL; END $$;
         CREATE TRIGGER slug_it AFTER INSERT ON slugged FOR EACH ROW EXECUTE FUNCTION slug_it()`,
        pooling,
      )
      await using _db = db
      await storedAs(db, 'slugged', await copying.table<Row>('slugged').addMany([{ name: 'A' }, { name: 'B' }]))
      // Every column given, keys too (copyKeyedReturning): the same.
      await storedAs(
        db,
        'slugged',
        await copying.table<Row>('slugged').addMany([
          { id: 100, name: 'C', slug: null },
          { id: 101, name: 'D', slug: null },
        ]),
      )
    })

    test(`an AFTER INSERT statement trigger (transition table) that normalises the rows (${mode})`, async () => {
      const { db, copying } = await tableWith(
        'rvafterstmt',
        `CREATE TABLE named (id serial PRIMARY KEY, name text NOT NULL);
         CREATE FUNCTION trim_names() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE named n SET name = btrim(n.name) FROM fresh WHERE n.id = fresh.id; RETURN NULL; END $$;
         CREATE TRIGGER trim_names AFTER INSERT ON named REFERENCING NEW TABLE AS fresh FOR EACH STATEMENT EXECUTE FUNCTION trim_names()`,
        pooling,
      )
      await using _db = db
      await storedAs(db, 'named', await copying.table<Row>('named').addMany([{ name: ' a ' }, { name: ' b ' }]))
    })

    test(`rows that give no column, every value a default (${mode})`, async () => {
      const { db, copying } = await tableWith('rvempty', `CREATE TABLE blank (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`, pooling)
      await using _db = db
      const rows = await copying.table<Row>('blank').addMany([{}, {}, {}])
      assert.equal(rows.length, 3)
      await storedAs(db, 'blank', rows)
    })

    test(`statements the caller runs in the enclosing transaction while addMany runs (${mode})`, async () => {
      const { db, copying } = await tableWith('rvinterleave', `CREATE TABLE busy (id serial PRIMARY KEY, v int NOT NULL)`, pooling)
      await using _db = db
      const input = Array.from({ length: 500 }, (_, i) => ({ v: i }))
      const rows = await db.transaction(async () => {
        let done = false
        const adding = copying
          .table<Row>('busy')
          .addMany(input)
          .finally(() => (done = true))
        // db.query from the transaction while addMany's savepoint is open runs inside that savepoint.
        const side = (async () => {
          while (!done) await db.query('INSERT INTO busy (v) VALUES (-1)')
        })()
        return (await Promise.all([adding, side]))[0]
      })
      assert.deepEqual(
        rows.map((r) => r.v),
        input.map((r) => r.v),
      )
      await storedAs(db, 'busy', rows)
    })
  }

  test('a column added after the store read the catalog', async () => {
    const { db, dbname, copying } = await tableWith('rvadded', `CREATE TABLE grown (id serial PRIMARY KEY, name text NOT NULL)`)
    await using _db = db
    const grown = copying.table<Row>('grown')
    await grown.addMany([{ name: 'x' }, { name: 'y' }]) // the store has read the catalog
    await admin(`ALTER TABLE grown ADD COLUMN at timestamptz NOT NULL DEFAULT now()`, [], dbname)
    await storedAs(db, 'grown', await grown.addMany([{ name: 'a' }, { name: 'b' }]))
  })

  test('a column type, a default, a BEFORE trigger changed after the store read the catalog', async () => {
    const { db, dbname, copying } = await tableWith('rvstale', `CREATE TABLE coded (id serial PRIMARY KEY, code text NOT NULL, tag text DEFAULT 'x')`)
    await using _db = db
    const coded = copying.table<Row>('coded')
    await coded.addMany([{ code: 'x' }, { code: 'y' }])
    await admin(`ALTER TABLE coded ALTER COLUMN code TYPE char(4)`, [], dbname)
    await storedAs(db, 'coded', await coded.addMany([{ code: 'ab' }, { code: 'c' }])) // 'ab  ' stored, 'ab' returned
    await admin(`ALTER TABLE coded ALTER COLUMN code TYPE text; CREATE SEQUENCE tags; ALTER TABLE coded ALTER COLUMN tag SET DEFAULT 't' || nextval('tags')`, [], dbname)
    await storedAs(db, 'coded', await coded.addMany([{ code: 'a' }, { code: 'b' }])) // t1, t2 stored; t1, t1 returned
    await admin(
      `CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.code := upper(NEW.code); RETURN NEW; END $$;
       CREATE TRIGGER up BEFORE INSERT ON coded FOR EACH ROW EXECUTE FUNCTION up()`,
      [],
      dbname,
    )
    await storedAs(db, 'coded', await coded.addMany([{ code: 'a' }, { code: 'b' }])) // A, B stored; a, b returned
  })

  test('a default printed as now() that is a volatile function of the search path', async () => {
    const { db, copying } = await tableWith(
      'rvnow',
      `CREATE SCHEMA app; CREATE SEQUENCE app.tick;
       CREATE FUNCTION app.now() RETURNS timestamptz LANGUAGE sql VOLATILE AS $$ SELECT timestamptz '2026-01-01' + nextval('app.tick') * interval '1 second' $$;
       SET search_path = app, pg_catalog;
       CREATE TABLE public.stamped (id serial PRIMARY KEY, v int NOT NULL, at timestamptz NOT NULL DEFAULT now())`,
      undefined,
      '-c search_path=app,pg_catalog,public',
    )
    await using _db = db
    await storedAs(db, 'stamped', await copying.table<Row>('stamped').addMany([{ v: 1 }, { v: 2 }, { v: 3 }]))
  })
})
