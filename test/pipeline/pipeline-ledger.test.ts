// The ledger and the roles that run a pipeline: an existing ledger is used, never re-created, so a
// role that may write it needs no CREATE; a ledger the session cannot write fails up front, clearly.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { ensureLedger } from '../../src/pipeline/pipeline-ledger.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { admin, cleanEnv, freshDatabase, freshRole, scratchDir, server, urlFor, writePgpass } from '../helpers.ts'

const worker = new URL('../fixtures/workers/counter.ts', import.meta.url)
const keys = Array.from({ length: 20 }, (_, i) => ({ key: i + 1 }))
const pipeline = (ledger?: string) => definePipeline({ name: 'roles', worker, tasks: keys, ...(ledger ? { ledger } : {}) })

let dbname: string
let writer: { name: string; password: string }
let nobody: { name: string; password: string }
let pgpassFile: string

before(async () => {
  ;({ dbname } = await freshDatabase('ledgerroles'))
  writer = await freshRole('writer')
  nobody = await freshRole('nobody')
  // As an admin set it up: the ledger exists, the writer may use it and the counters, and create nothing.
  await using owner = new Database({ connectionString: urlFor(dbname), env: cleanEnv() })
  await ensureLedger(owner, 'pgcrew_ledger')
  await admin(
    `CREATE TABLE counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0);
     INSERT INTO counters SELECT generate_series(1, 20);
     REVOKE CREATE ON SCHEMA public FROM PUBLIC;
     GRANT SELECT, UPDATE ON counters TO "${writer.name}";
     GRANT SELECT, INSERT, UPDATE ON pgcrew_ledger TO "${writer.name}"`,
    [],
    dbname,
  )
  const { host, port } = server()
  pgpassFile = writePgpass(scratchDir(), [`${host}:${port}:*:${writer.name}:${writer.password}`, `${host}:${port}:*:${nobody.name}:${nobody.password}`])
})

function as(role: { name: string }, extra: Record<string, unknown> = {}): Database {
  const { host, port } = server()
  return new Database({ host, port, dbname, user: role.name, pgpassFile, env: cleanEnv(), max: 2, ...extra })
}

describe('the ledger and the roles that run a pipeline', () => {
  test('a role with SELECT, INSERT, UPDATE on an existing ledger and no CREATE anywhere runs the pipeline, and a rerun skips', async () => {
    await using db = as(writer)
    const summary = await runPipeline(db, pipeline(), { threads: 2 })
    assert.deepEqual([summary.done, summary.failed], [20, 0])
    const again = await runPipeline(db, pipeline(), { threads: 1 })
    assert.deepEqual([again.done, again.skipped], [0, 20])
    assert.equal((await db.query('SELECT count(*)::int AS n FROM counters WHERE n = 1')).rows[0].n, 20)
  })

  test('a role with no privilege on the ledger fails before any task, naming the table, the role and the GRANT', async () => {
    await using db = as(nobody)
    await assert.rejects(runPipeline(db, pipeline(), { threads: 1 }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'LEDGER_NOT_WRITABLE')
      assert.equal(
        error.message,
        `the ledger table "pgcrew_ledger" cannot be written by role "${nobody.name}": it lacks SELECT, INSERT, UPDATE on it. ` +
          `Ways out: run as a role that may write it (pgcrew run … --as admin, or db.becomeAdmin()); give the pipeline a ledger in a schema "${nobody.name}" can write (ledger: 'schema.table'); ` +
          `or have its owner run: GRANT SELECT, INSERT, UPDATE ON "pgcrew_ledger" TO "${nobody.name}"`,
      )
      return true
    })
  })

  test('a missing ledger the role may not create, or in a schema it may not use, is LEDGER_NOT_WRITABLE too', async () => {
    await admin('CREATE SCHEMA IF NOT EXISTS closed', [], dbname)
    await using db = as(nobody)
    await assert.rejects(runPipeline(db, pipeline('their_ledger'), { threads: 1 }), {
      code: 'LEDGER_NOT_WRITABLE',
      message: new RegExp(
        `^the ledger table "their_ledger" cannot be created by role "${nobody.name}": it may not create tables there \\(permission denied for schema public\\)\\. .*have an admin create it once`,
      ),
    })
    await assert.rejects(runPipeline(db, pipeline('closed.ledger'), { threads: 1 }), {
      code: 'LEDGER_NOT_WRITABLE',
      message: new RegExp(
        `^the ledger table "closed"\\."ledger" cannot be used by role "${nobody.name}": it has no USAGE on schema "closed" .*GRANT USAGE ON SCHEMA "closed" TO "${nobody.name}"; GRANT SELECT, INSERT, UPDATE ON "closed"\\."ledger"`,
      ),
    })
    assert.equal((await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('their_ledger', 'ledger')", [], dbname))[0]!.n, 0)
  })

  test('a read-only session (becomeUser) is told so, whether the ledger exists or not', async () => {
    await using db = as(writer)
    await db.becomeUser()
    assert.equal(db.readOnly, true)
    for (const [ledger, verb] of [
      [undefined, 'written'],
      ['new_ledger', 'created'],
    ] as const) {
      await assert.rejects(runPipeline(db, pipeline(ledger), { threads: 1 }), {
        code: 'LEDGER_NOT_WRITABLE',
        message: new RegExp(
          `cannot be ${verb} by role "${writer.name}": the session is read-only \\(becomeUser\\(\\), or readonly in the profile\\)\\. Ways out: run as a role that may write it \\(pgcrew run … --as admin`,
        ),
      })
    }
  })
})
