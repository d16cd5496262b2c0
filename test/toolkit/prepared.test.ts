import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { statementName } from '../../src/connect/connect-client.ts'
import { Database } from '../../src/database/database.ts'
import type { Transaction } from '../../src/database/transaction.ts'
import { UndefinedColumn } from '../../src/errors/database-error.ts'
import { prepare } from '../../src/toolkit/prepared.ts'
import { admin, atEnd, cleanEnv, eventually, freshDatabase } from '../helpers.ts'

describe('prepared statements', () => {
  let db: Database
  before(async () => {
    const { url } = await freshDatabase('prep')
    db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.query(
      "CREATE TABLE users (id int PRIMARY KEY, email varchar(40) NOT NULL, joined timestamptz DEFAULT now(), score numeric(6,2)); INSERT INTO users VALUES (1, 'a@x', now(), 1.5), (2, 'b@x', now(), 2)",
    )
  })
  after(() => db.close())

  it('reports column names and types, and parameter types, as the server sees them', async () => {
    const stmt = await prepare(db, 'SELECT id, email, joined, score, id * 2 AS double FROM users WHERE id = $1 AND email LIKE $2')
    assert.deepEqual(stmt.columnNames, ['id', 'email', 'joined', 'score', 'double'])
    assert.deepEqual(
      stmt.columnTypes.map((c) => [c.oid, c.name]),
      [
        [23, 'integer'],
        [1043, 'character varying(40)'],
        [1184, 'timestamp with time zone'],
        [1700, 'numeric(6,2)'],
        [23, 'integer'],
      ],
    )
    assert.deepEqual(
      stmt.parameterTypes.map((p) => p.name),
      ['integer', 'text'],
    )
    const server = await db.withClient(async (client) => {
      await client.query({ name: stmt.name, text: stmt.text, values: [1, '%'] })
      return (await client.query('SELECT parameter_types::text[] AS p FROM pg_prepared_statements WHERE name = $1', [stmt.name])).rows[0].p
    })
    assert.deepEqual(server, ['integer', 'text'])
    const table = (await db.query("SELECT 'users'::regclass::oid AS oid")).rows[0].oid
    assert.equal(stmt.columnTypes[0]!.tableOid, table)
    assert.equal(stmt.columnTypes[4]!.tableOid, 0)
  })

  it('are named from their text alone, the same in every process and however many texts came before', () => {
    const text = 'SELECT id FROM users WHERE id = $1'
    const expected = `pgcrew_${createHash('sha256').update(text).digest('hex').slice(0, 20)}`
    assert.equal(statementName(text), expected)
    // More texts than the names remembered in one process: the name does not change once they are forgotten.
    const others = Array.from({ length: 3000 }, (_, i) => statementName(`SELECT ${i}`))
    assert.equal(new Set(others).size, 3000)
    assert.equal(statementName(text), expected)
    assert.equal(statementName('SELECT 7'), others[7])
  })

  it('runs many times; the server parses it once per connection', async () => {
    const stmt = await prepare(db, 'SELECT email FROM users WHERE id = $1')
    assert.deepEqual(await stmt.rows([1]), [{ email: 'a@x' }])
    assert.deepEqual(await stmt.first([2]), { email: 'b@x' })
    assert.equal(await stmt.first([3]), undefined)
    const counts = await db.withClient(async (client) => {
      for (let i = 0; i < 5; i++) await stmt.query([1], client)
      return (await client.query('SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = $1', [stmt.name])).rows[0].n
    })
    assert.equal(counts, 1)
    const insert = await prepare(db, 'INSERT INTO users (id, email) VALUES ($1, $2)')
    assert.deepEqual(insert.columnNames, [])
    await db.transaction(async (tx) => {
      await insert.query([3, 'c@x'], tx)
    })
    assert.equal((await db.query('SELECT count(*)::int AS n FROM users')).rows[0].n, 3)
  })

  it('a broken statement fails with a typed error and leaves the connection usable', async () => {
    await assert.rejects(prepare(db, 'SELECT nope FROM users'), UndefinedColumn)
    assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1)
  })
})

describe('statements with parameters run as named prepared statements (prepareStatements)', () => {
  const ours = 'SELECT name, statement FROM pg_prepared_statements WHERE name LIKE $1 ORDER BY name'
  const named = async (db: Database): Promise<string[]> =>
    db.transaction(async (tx) =>
      (await tx.query<{ statement: string }>(ours, ['pgcrew_%'])).rows
        .map((r) => r.statement)
        .filter((s) => s !== ours)
        .sort(),
    )

  it('are parsed once per connection, and not at all with prepareStatements: false', async () => {
    const { url } = await freshDatabase('prepauto')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.query('CREATE TABLE t (id int PRIMARY KEY, v text)')
    for (let i = 0; i < 3; i++) await db.query('INSERT INTO t VALUES ($1, $2)', [i, `v${i}`])
    assert.deepEqual((await db.query('SELECT v FROM t WHERE id = $1', [2])).rows, [{ v: 'v2' }])
    assert.deepEqual(await named(db), ['INSERT INTO t VALUES ($1, $2)', 'SELECT v FROM t WHERE id = $1'].sort())
    await using plain = new Database({ connectionString: url, env: cleanEnv(), max: 1, prepareStatements: false })
    assert.deepEqual((await plain.query('SELECT v FROM t WHERE id = $1', [1])).rows, [{ v: 'v1' }])
    assert.deepEqual(await named(plain), [])
  })

  it('still run after DISCARD ALL, after the server ended the connection, and after changeVersion', async () => {
    const { url, dbname } = await freshDatabase('prepdiscard')
    await admin(`CREATE DATABASE "${dbname}_2"`)
    atEnd(() => admin(`DROP DATABASE IF EXISTS "${dbname}_2" WITH (FORCE)`))
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.query('CREATE TABLE t (id int PRIMARY KEY)')
    await db.query('INSERT INTO t VALUES ($1)', [1])
    // The server forgets the session's statements; pg would skip the Parse and fail with 26000.
    await db.query('DISCARD ALL')
    assert.deepEqual((await db.query('SELECT id FROM t WHERE id = $1', [1])).rows, [{ id: 1 }])
    await db.query('INSERT INTO t VALUES ($1)', [2])
    // A new physical connection has none of them.
    await admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [dbname])
    assert.ok(await eventually(async () => db.idleErrorCount === 1), 'the pool did not notice its connection end')
    assert.deepEqual((await db.query('SELECT id FROM t WHERE id = $1', [2])).rows, [{ id: 2 }])
    await db.changeVersion('2')
    await db.query('CREATE TABLE t (id int PRIMARY KEY)')
    await db.query('INSERT INTO t VALUES ($1)', [20])
    assert.deepEqual((await db.query('SELECT id FROM t WHERE id = $1', [20])).rows, [{ id: 20 }])
    await db.changeVersion()
    assert.deepEqual((await db.query('SELECT id FROM t WHERE id = $1', [1])).rows, [{ id: 1 }])
  })

  it("are at most 256 per connection, counting those sent as a transaction's first statement with its BEGIN", async () => {
    const { url } = await freshDatabase('prepcap')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    for (let i = 0; i < 300; i++) {
      const text = `SELECT $1::int + ${i} AS n`
      assert.deepEqual((await db.query(text, [1])).rows, [{ n: 1 + i }])
      assert.deepEqual((await db.transaction((tx) => tx.query(text, [2]))).rows, [{ n: 2 + i }])
    }
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements')
    assert.equal(rows[0]!.n, 256)
  })

  it('see a changed table: outside a transaction the statement is parsed again, inside one the error stands', async () => {
    const { url } = await freshDatabase('prepalter')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.query('CREATE TABLE t (id int PRIMARY KEY)')
    await db.query('INSERT INTO t VALUES ($1)', [1])
    const select = 'SELECT * FROM t WHERE id = $1'
    assert.deepEqual((await db.query(select, [1])).rows, [{ id: 1 }])
    await db.query('ALTER TABLE t ADD COLUMN v text DEFAULT $$x$$')
    // The cached plan's result type changed (0A000): resent under a fresh name, it sees the new column.
    assert.deepEqual((await db.query(select, [1])).rows, [{ id: 1, v: 'x' }])
    await db.query('ALTER TABLE t ADD COLUMN w int DEFAULT 7')
    // Inside a transaction (here its second statement) the statement ran and failed: the error stands.
    const second = (tx: Transaction) => tx.query('SELECT 1 WHERE $1::int = 1', [1]).then(() => tx.query(select, [1]))
    await assert.rejects(db.transaction(second), { code: '0A000' })
    assert.deepEqual((await db.transaction(second)).rows, [{ id: 1, v: 'x', w: 7 }])
    // A transaction's first statement goes out with its BEGIN under a name of its own: the same rule.
    assert.deepEqual((await db.transaction((tx) => tx.query(select, [1]))).rows, [{ id: 1, v: 'x', w: 7 }])
    await db.query('ALTER TABLE t ADD COLUMN z int DEFAULT 8')
    await assert.rejects(
      db.transaction((tx) => tx.query(select, [1])),
      { code: '0A000' },
    )
    assert.deepEqual((await db.transaction((tx) => tx.query(select, [1]))).rows, [{ id: 1, v: 'x', w: 7, z: 8 }])
  })
})
