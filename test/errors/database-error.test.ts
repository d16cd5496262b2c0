import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import * as errors from '../../src/errors/database-error.ts'
import { SQLSTATES } from '../../src/errors/sqlstate.ts'
import { admin, cleanEnv, eventually, freshDatabase } from '../helpers.ts'

let db: Database
let url: string

before(async () => {
  ;({ url } = await freshDatabase('errs'))
  db = new Database({ connectionString: url, env: cleanEnv() })
  await db.connect()
  await db.query(`
    CREATE TABLE parent (id int PRIMARY KEY);
    CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent, name text NOT NULL, qty int CHECK (qty > 0), code varchar(3));
    CREATE EXTENSION IF NOT EXISTS btree_gist;
    CREATE TABLE booking (room int, during int4range, EXCLUDE USING gist (room WITH =, during WITH &&));
    INSERT INTO parent VALUES (1);
    INSERT INTO child VALUES (1, 1, 'a', 1, 'x');
    INSERT INTO booking VALUES (1, '[1,5)');
    CREATE ROLE errs_nobody_${process.pid} NOLOGIN;`)
})
after(async () => {
  await db.close()
  await admin(`DROP ROLE IF EXISTS errs_nobody_${process.pid}`)
})

async function failure(sql: string): Promise<unknown> {
  try {
    await db.query(sql)
  } catch (error) {
    return errors.mapDatabaseError(error)
  }
  assert.fail(`expected ${sql} to fail`)
}

// Each statement is provoked on a real server; the class chosen is what a user's catch block sees.
const cases: Array<[string, string, new (...a: never[]) => errors.DatabaseError, Function?]> = [
  ['23505', 'INSERT INTO parent VALUES (1)', errors.UniqueViolation, errors.IntegrityConstraintViolation],
  ['23503', "INSERT INTO child VALUES (2, 99, 'b', 1, 'x')", errors.ForeignKeyViolation, errors.IntegrityConstraintViolation],
  ['23502', "INSERT INTO child VALUES (3, 1, NULL, 1, 'x')", errors.NotNullViolation],
  ['23514', "INSERT INTO child VALUES (4, 1, 'd', 0, 'x')", errors.CheckViolation],
  ['23P01', "INSERT INTO booking VALUES (1, '[3,8)')", errors.ExclusionViolation],
  ['22012', 'SELECT 1/0', errors.DivisionByZero, errors.DataException],
  ['22001', "INSERT INTO child VALUES (5, 1, 'e', 1, 'toolong')", errors.StringDataRightTruncation],
  ['22P02', "SELECT 'abc'::int", errors.InvalidTextRepresentation],
  ['22003', 'SELECT 2147483647::int + 1', errors.NumericValueOutOfRange],
  ['42601', 'SELEC 1', errors.SqlSyntaxError, errors.SyntaxErrorOrAccessRuleViolation],
  ['42P01', 'SELECT * FROM no_such_table', errors.UndefinedTable],
  ['42703', 'SELECT no_such_column FROM parent', errors.UndefinedColumn],
  ['42883', 'SELECT no_such_function()', errors.UndefinedFunction],
  ['42704', 'SET no_such_setting_really = 1', errors.UndefinedObject],
  ['42P07', 'CREATE TABLE parent (id int)', errors.DuplicateTable],
  ['42501', `SET ROLE errs_nobody_${process.pid}; SELECT * FROM parent`, errors.InsufficientPrivilege],
  ['0A000', 'SELECT * FROM other_db.public.t', errors.FeatureNotSupported],
  ['3F000', 'CREATE TABLE no_such_schema.t (id int)', errors.InvalidSchemaName],
  ['25006', 'BEGIN READ ONLY; INSERT INTO parent VALUES (5)', errors.ReadOnlySqlTransaction, errors.InvalidTransactionState],
  ['57014', 'SET statement_timeout = 50; SELECT pg_sleep(2)', errors.QueryCanceled, errors.OperatorIntervention],
  ['P0001', "DO $$ BEGIN RAISE EXCEPTION 'custom %', 1 USING HINT = 'do the thing'; END $$", errors.RaiseException],
  ['21000', 'SELECT (SELECT id FROM generate_series(1,2) id)', errors.CardinalityViolation],
]

describe('mapDatabaseError on errors a real server raises', () => {
  for (const [code, sql, Class, Parent] of cases) {
    it(`${code} ${SQLSTATES[code]?.name ?? ''} → ${Class.name}`, async () => {
      // statements that change session state run on their own connection
      const fresh = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
      try {
        const error = await fresh.query(sql).then(
          () => assert.fail('no error'),
          (e: unknown) => errors.mapDatabaseError(e),
        )
        assert.ok(error instanceof Class, `got ${(error as Error).name}: ${(error as Error).message}`)
        assert.ok(error instanceof errors.DatabaseError && error instanceof PgcrewError)
        assert.equal(error.code, code)
        if (Parent) assert.ok(error instanceof Parent)
        assert.equal(error.name, Class.name)
        assert.equal(errors.mapDatabaseError(error), error, 'mapping twice returns the same error')
      } finally {
        await fresh.close()
      }
    })
  }

  it('keeps the server fields (constraint, table, detail, hint, position)', async () => {
    const unique = (await failure('INSERT INTO parent VALUES (1)')) as errors.UniqueViolation
    assert.equal(unique.constraint, 'parent_pkey')
    assert.equal(unique.table, 'parent')
    assert.equal(unique.schema, 'public')
    assert.match(unique.detail ?? '', /Key \(id\)=\(1\) already exists/)
    assert.equal(unique.conditionName, 'unique_violation')
    assert.equal(unique.className, 'Integrity Constraint Violation')
    assert.equal(unique.transient, false)
    assert.ok(unique.cause instanceof Error)
    const notNull = (await failure("INSERT INTO child VALUES (3, 1, NULL, 1, 'x')")) as errors.NotNullViolation
    assert.equal(notNull.column, 'name')
    const syntax = (await failure('SELECT 1 FRM parent')) as errors.SqlSyntaxError
    assert.equal(syntax.position, '14')
    const raised = (await failure("DO $$ BEGIN RAISE EXCEPTION 'nope' USING HINT = 'try again'; END $$")) as errors.RaiseException
    assert.equal(raised.hint, 'try again')
    assert.deepEqual(JSON.parse(JSON.stringify(unique)).constraint, 'parent_pkey')
  })

  it('25P02 after a swallowed error, 55P03 on a NOWAIT lock held elsewhere', async () => {
    const inFailed = await db.withClient(async (client) => {
      await client.query('BEGIN')
      await client.query('SELECT 1/0').catch(() => {})
      const e = await client.query('SELECT 1').then(
        () => undefined,
        (err: unknown) => errors.mapDatabaseError(err),
      )
      await client.query('ROLLBACK')
      return e
    })
    assert.ok(inFailed instanceof errors.InFailedSqlTransaction && inFailed instanceof errors.InvalidTransactionState)
    assert.equal(inFailed.code, '25P02')
    const other = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
    try {
      const locked = await db.transaction(async (tx) => {
        await tx.query('SELECT * FROM parent WHERE id = 1 FOR UPDATE')
        return other.query('SELECT * FROM parent WHERE id = 1 FOR UPDATE NOWAIT').then(
          () => undefined,
          (e: unknown) => errors.mapDatabaseError(e),
        )
      })
      assert.ok(locked instanceof errors.LockNotAvailable && locked instanceof errors.ObjectNotInPrerequisiteState)
      assert.equal(locked.transient, true)
    } finally {
      await other.close()
    }
  })

  it('falls back to the class for an unknown code in a known class, then to DatabaseError', async () => {
    const inClass = await failure("DO $$ BEGIN RAISE SQLSTATE '23Q99'; END $$")
    assert.ok(inClass instanceof errors.IntegrityConstraintViolation)
    assert.equal(inClass.constructor, errors.IntegrityConstraintViolation)
    assert.equal((inClass as errors.DatabaseError).code, '23Q99')
    assert.equal((inClass as errors.DatabaseError).conditionName, undefined)
    const unknownClass = await failure("DO $$ BEGIN RAISE SQLSTATE 'QQ001'; END $$")
    assert.equal(unknownClass?.constructor, errors.DatabaseError)
    assert.equal((unknownClass as errors.DatabaseError).code, 'QQ001')
  })

  it('marks serialization failures, deadlocks and terminated sessions as transient', async () => {
    for (const code of ['40001', '40P01']) {
      const e = (await failure(`DO $$ BEGIN RAISE SQLSTATE '${code}'; END $$`)) as errors.DatabaseError
      assert.equal(e.transient, true, code)
      assert.ok(e instanceof errors.TransactionRollback)
      assert.ok(errors.isTransientError(e))
    }
    const fresh = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
    const error = await fresh
      .withClient(async (client) => {
        const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
        const sleeping = client.query('SELECT pg_sleep(30)').then(
          () => undefined,
          (e: unknown) => errors.mapDatabaseError(e),
        )
        // Terminate only once the sleep is running, so the error lands on an active query.
        await eventually(async () => (await admin("SELECT pg_terminate_backend($1) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [pid])).length === 1)
        return sleeping
      })
      .catch((e: unknown) => e)
    await fresh.close()
    assert.ok(error instanceof errors.AdminShutdown, String(error))
    assert.ok(error instanceof errors.BackendTerminated)
    assert.equal(error.code, '57P01')
    assert.equal(error.transient, true)
  })

  it('maps the generated table consistently with the server: RAISE by code, catch by condition name', async () => {
    const sample = ['23505', '40P01', '55P03', '57P01', '3D000', '42P01', '22012', '25P02', '53300', '0A000']
    for (const code of sample) {
      const name = SQLSTATES[code]!.name
      const { rows } = await db.query(`DO $$ BEGIN RAISE SQLSTATE '${code}'; EXCEPTION WHEN ${name} THEN RAISE NOTICE 'ok'; END $$`).then(() => ({ rows: [1] }))
      assert.equal(rows.length, 1, `${code} is ${name} on the server too`)
      const mapped = await failure(`DO $$ BEGIN RAISE SQLSTATE '${code}'; END $$`)
      assert.equal(mapped?.constructor, errors.errorClassFor(code))
    }
  })

  it('leaves anything that is not a server error alone', () => {
    const plain = new Error('boom')
    const socket = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' })
    const own = new PgcrewError('USAGE', 'bad')
    assert.equal(errors.mapDatabaseError(plain), plain)
    assert.equal(errors.mapDatabaseError(socket), socket)
    assert.equal(errors.mapDatabaseError(own), own)
    assert.equal(errors.mapDatabaseError('text'), 'text')
    assert.equal(errors.isTransientError(socket), true)
  })
})

describe('connection-level errors (retried for a time window, not a number of times)', () => {
  it("a statement after the session was killed while idle in a transaction fails with pg's code-less error, which counts as a lost connection", async () => {
    const pg = (await import('pg')).default
    const client = new pg.Client({ connectionString: url })
    client.on('error', () => {})
    await client.connect()
    await client.query('BEGIN')
    const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    await admin('SELECT pg_terminate_backend($1)', [pid])
    assert.ok(await eventually(async () => (await admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0))
    // The kill's FATAL message arrives while no query runs: pg marks the client unusable.
    await new Promise((r) => setTimeout(r, 100))
    const error = await client.query('SELECT 1').then(
      () => undefined,
      (e: unknown) => e,
    )
    await client.end().catch(() => {})
    assert.ok(error instanceof Error)
    assert.equal((error as { code?: unknown }).code, undefined, 'pg sets no code on this error')
    assert.equal(errors.isConnectionLost(error), true, (error as Error).message)
    assert.equal(errors.isTransientError(error), true)
  })

  it('sorts codes into lost connections and other transient errors', () => {
    const server = (code: string) => Object.assign(new Error(code), { code, severity: 'FATAL' })
    for (const code of ['57P01', '57P02', '57P03', '53300', '08006', '08001']) {
      assert.equal(errors.isConnectionLost(server(code)), true, code)
      assert.equal(errors.isTransientError(server(code)), true, code)
      assert.equal((errors.mapDatabaseError(server(code)) as errors.DatabaseError).connectionLost, true, code)
    }
    for (const code of ['40001', '40P01', '55P03']) {
      assert.equal(errors.isConnectionLost(server(code)), false, code)
      assert.equal(errors.isTransientError(server(code)), true, code)
    }
    // The work may have committed (08007), or it is a bug (08P01): neither is retried blindly.
    for (const code of ['08007', '08P01', '23505', '28P01']) assert.equal(errors.isTransientError(server(code)), false, code)
    for (const code of ['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ETIMEDOUT']) assert.equal(errors.isConnectionLost(Object.assign(new Error(code), { code })), true, code)
    assert.equal(errors.isConnectionLost(Object.assign(new Error('no socket'), { code: 'ENOENT', syscall: 'connect' })), true)
    assert.equal(errors.isConnectionLost(Object.assign(new Error('no file'), { code: 'ENOENT', syscall: 'open' })), false)
    assert.equal(errors.isConnectionLost(new Error('Connection terminated unexpectedly')), true)
    // Only pg's own plain errors: a user's error with similar words is the user's.
    assert.equal(errors.isConnectionLost(new TypeError('Connection terminated unexpectedly')), false)
    assert.equal(errors.isConnectionLost(new Error('connection terminated unexpectedly, said the user')), false)
    // A failed connect, as pgcrew wraps it: an outage when its cause is one, not for a wrong password.
    const refused = new PgcrewError('CONNECTION_REFUSED', 'cannot connect', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) })
    const full = new PgcrewError('CONNECTION_FAILED', 'too many clients', { cause: server('53300') })
    const password = new PgcrewError('AUTHENTICATION_FAILED', 'bad password', { cause: server('28P01') })
    assert.deepEqual(
      [refused, full, password].map((e) => errors.isConnectionLost(e)),
      [true, true, false],
    )
  })
})
