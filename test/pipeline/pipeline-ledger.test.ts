// The ledger and the roles that run a pipeline: an existing ledger is used, never re-created, so a
// role that may write it needs no CREATE; a ledger the session cannot write fails up front, clearly.
import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { ensureLedger, recordFailure } from '../../src/pipeline/pipeline-ledger.ts'
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

  test('every row says where it ran (host, worker), a failure keeps its error code, and attempts add up over runs', async () => {
    await using db = new Database({ connectionString: urlFor(dbname), env: cleanEnv(), max: 2 })
    const saved = process.env.PGCREW_HOSTNAME
    process.env.PGCREW_HOSTNAME = 'node-a.example'
    try {
      // Key 5 failed twice in an earlier run; key -1 fails for good in every run.
      await ensureLedger(db, 'where_ledger')
      await recordFailure(db, 'where_ledger', { pipeline: 'where', key: '5', attempts: 2, workerId: 1, host: 'node-b.example', code: '40001', message: 'could not serialize' })
      const def = definePipeline({ name: 'where', worker, ledger: 'where_ledger', tasks: [{ key: 4 }, { key: 5 }, { key: -1 }] })
      for (let run = 1; run <= 2; run++) await runPipeline(db, def, { threads: 2, retries: 0 })
      const { rows } = await db.query(`SELECT key, status, attempts, worker BETWEEN 1 AND 2 AS by_worker, host, error_code, error FROM where_ledger ORDER BY key`)
      assert.deepEqual(rows, [
        { key: '-1', status: 'failed', attempts: 2, by_worker: true, host: 'node-a.example', error_code: 'Error', error: 'permanent failure for key -1' },
        { key: '4', status: 'done', attempts: 1, by_worker: true, host: 'node-a.example', error_code: null, error: null },
        { key: '5', status: 'done', attempts: 3, by_worker: true, host: 'node-a.example', error_code: null, error: null },
      ])
    } finally {
      if (saved === undefined) delete process.env.PGCREW_HOSTNAME
      else process.env.PGCREW_HOSTNAME = saved
    }
  })

  test('a ledger made by an older pgcrew gains host and error_code in place, rows kept; a role that may not alter it is told what to run', async () => {
    const oldLedger = (name: string) => `CREATE TABLE ${name} (
        pipeline text NOT NULL, key text NOT NULL, status text NOT NULL CHECK (status IN ('done', 'failed')), attempts integer NOT NULL DEFAULT 1,
        worker integer, error text, finished_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, key));
      INSERT INTO ${name} (pipeline, key, status) VALUES ('roles', '1', 'done')`
    await admin(`${oldLedger('old_ledger')}; ${oldLedger('old_shared')}; GRANT SELECT, INSERT, UPDATE ON old_shared TO "${writer.name}"`, [], dbname)
    await using owner = new Database({ connectionString: urlFor(dbname), env: cleanEnv(), max: 2 })
    const summary = await runPipeline(owner, pipeline('old_ledger'), { threads: 1 })
    assert.deepEqual([summary.skipped, summary.done], [1, 19])
    const columns = await admin<{ c: string }>("SELECT attname AS c FROM pg_attribute WHERE attrelid = 'old_ledger'::regclass AND attnum > 0 ORDER BY attnum", [], dbname)
    assert.deepEqual(
      columns.map((r) => r.c),
      ['pipeline', 'key', 'status', 'attempts', 'worker', 'error', 'finished_at', 'host', 'error_code'],
    )
    assert.equal((await admin<{ n: number }>("SELECT count(*)::int AS n FROM old_ledger WHERE host IS NOT NULL AND key <> '1'", [], dbname))[0]!.n, 19)

    await using db = as(writer)
    await assert.rejects(runPipeline(db, pipeline('old_shared'), { threads: 1 }), {
      code: 'LEDGER_NEEDS_UPGRADE',
      message: new RegExp(
        `^the ledger table "old_shared" was made by an older pgcrew and lacks the columns host, error_code; role "${writer.name}" may not add them \\(must be owner of table old_shared\\)\\. ` +
          `Have its owner run once: ALTER TABLE "old_shared" ADD COLUMN IF NOT EXISTS "host" text, ADD COLUMN IF NOT EXISTS "error_code" text, or run the pipeline once as its owner \\(pgcrew run … --as admin\\)$`,
      ),
    })
  })
})
