import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../src/database.ts'
import { UndefinedColumn } from '../src/database-error.ts'
import { prepare } from '../src/prepared.ts'
import { cleanEnv, freshDatabase } from './helpers.ts'

describe('prepared statements', () => {
  let db: Database
  before(async () => {
    const { url } = await freshDatabase('prep')
    db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.query("CREATE TABLE users (id int PRIMARY KEY, email varchar(40) NOT NULL, joined timestamptz DEFAULT now(), score numeric(6,2)); INSERT INTO users VALUES (1, 'a@x', now(), 1.5), (2, 'b@x', now(), 2)")
  })
  after(() => db.close())

  it('reports column names and types, and parameter types, as the server sees them', async () => {
    const stmt = await prepare(db, 'SELECT id, email, joined, score, id * 2 AS double FROM users WHERE id = $1 AND email LIKE $2')
    assert.deepEqual(stmt.columnNames, ['id', 'email', 'joined', 'score', 'double'])
    assert.deepEqual(stmt.columnTypes.map((c) => [c.oid, c.name]), [[23, 'integer'], [1043, 'character varying(40)'], [1184, 'timestamp with time zone'], [1700, 'numeric(6,2)'], [23, 'integer']])
    assert.deepEqual(stmt.parameterTypes.map((p) => p.name), ['integer', 'text'])
    const server = await db.withClient(async (client) => {
      await client.query({ name: stmt.name, text: stmt.text, values: [1, '%'] })
      return (await client.query('SELECT parameter_types::text[] AS p FROM pg_prepared_statements WHERE name = $1', [stmt.name])).rows[0].p
    })
    assert.deepEqual(server, ['integer', 'text'])
    const table = (await db.query("SELECT 'users'::regclass::oid AS oid")).rows[0].oid
    assert.equal(stmt.columnTypes[0]!.tableOid, table)
    assert.equal(stmt.columnTypes[4]!.tableOid, 0)
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
    await db.transaction(async (tx) => { await insert.query([3, 'c@x'], tx) })
    assert.equal((await db.query('SELECT count(*)::int AS n FROM users')).rows[0].n, 3)
  })

  it('a broken statement fails with a typed error and leaves the connection usable', async () => {
    await assert.rejects(prepare(db, 'SELECT nope FROM users'), UndefinedColumn)
    assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1)
  })
})
