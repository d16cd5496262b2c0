// Regressions of runPipeline and loadPipeline: failure records that cannot be written, pipeline
// modules that cannot be loaded or are incomplete, and what Ctrl-C (an aborted signal) leaves behind.
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { main } from '../../src/cli/cli-main.ts'
import { Database } from '../../src/database/database.ts'
import { ensureLedger } from '../../src/pipeline/pipeline-ledger.ts'
import { definePipeline, loadPipeline, runPipeline, type PipelineDefinition, type RunSummary } from '../../src/pipeline/pipeline.ts'
import type { ProgressReporter } from '../../src/pipeline/pipeline-progress.ts'
import type { RegressionTask } from '../fixtures/workers/pipeline-regressions.ts'
import { admin, cleanEnv, collector, eventually, freshDatabase, scratchDir, server } from '../helpers.ts'

const worker = new URL('../fixtures/workers/pipeline-regressions.ts', import.meta.url)
const pipelineModule = new URL('../../src/pipeline/pipeline.ts', import.meta.url).href

// An unhandled rejection would crash `pgcrew run` (Node's default); collect them to assert there are none.
const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => unhandled.push(reason))
async function assertNoUnhandledRejection(): Promise<void> {
  await new Promise((r) => setTimeout(r, 50))
  assert.deepEqual(
    unhandled.map((e) => String(e)),
    [],
    'a promise rejection went unhandled',
  )
}

/** A pipeline over the regression worker: setup creates and fills the counters table for `keys`. */
function regressionPipeline(name: string, keys: number[], tasks: PipelineDefinition<RegressionTask>['tasks']): PipelineDefinition<RegressionTask> {
  return definePipeline<RegressionTask>({
    name,
    worker,
    setup: async (db) => {
      await db.query('CREATE TABLE IF NOT EXISTS counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
      await db.query('INSERT INTO counters SELECT unnest($1::int[]), 0 ON CONFLICT DO NOTHING', [keys])
    },
    tasks,
  })
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1)

async function counts(db: Database): Promise<Record<number, number>> {
  const { rows } = await db.query<{ key: number; n: number }>('SELECT key, n FROM counters ORDER BY key')
  return Object.fromEntries(rows.map((r) => [r.key, r.n]))
}

/** A progress reporter that aborts the run (as Ctrl-C does) once `done` tasks are done. */
function abortWhenDone(controller: AbortController, done: number): ProgressReporter {
  return {
    start: () => {},
    update: (s) => {
      if (s.done >= done) controller.abort()
    },
    stop: () => {},
  }
}

describe('failure records', () => {
  test('a task failing with a NUL byte in its message is counted, reported and recorded (NUL stored as \\0)', async () => {
    const { url } = await freshDatabase('pipenul')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = regressionPipeline(
      'nul',
      range(6),
      range(6).map((key) => (key === 2 ? { key, fail: 'nul' as const } : { key })),
    )
    const summary = await runPipeline(db, def, { threads: 1, perWorkerConnections: 1 })
    assert.deepEqual([summary.done, summary.failed], [5, 1])
    assert.deepEqual(
      summary.failures.map((f) => [f.key, f.attempts, f.message]),
      [['2', 1, 'bad input: \u0000 in a field']],
    )
    const { rows } = await db.query("SELECT key, status, attempts, error FROM pgcrew_ledger WHERE status = 'failed'")
    assert.deepEqual(rows, [{ key: '2', status: 'failed', attempts: 1, error: 'bad input: \\0 in a field' }])
    const again = await runPipeline(db, def, { threads: 1 })
    assert.deepEqual([again.skipped, again.done, again.failed], [5, 0, 1])
    await assertNoUnhandledRejection()
  })

  for (const source of ['an array', 'a slow async source'] as const) {
    test(`when the failure record cannot be written (${source}), the task still counts as failed, the summary says so and the run goes on`, async () => {
      const { url } = await freshDatabase('pipeledger')
      await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
      await ensureLedger(db, 'pgcrew_ledger')
      await db.query(`CREATE FUNCTION refuse_failed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the ledger refuses failed rows'; END $$`)
      await db.query(`CREATE TRIGGER refuse_failed BEFORE INSERT OR UPDATE ON pgcrew_ledger FOR EACH ROW WHEN (NEW.status = 'failed') EXECUTE FUNCTION refuse_failed()`)
      const task = (key: number): RegressionTask => (key === 3 ? { key, fail: 'plain' } : { key })
      // The slow source pauses after the failing task, so its failure lands while nothing waits on it.
      async function* slowly(): AsyncGenerator<RegressionTask> {
        for (const key of range(6)) {
          yield task(key)
          await new Promise((r) => setTimeout(r, key === 3 ? 1000 : 20))
        }
      }
      const def = regressionPipeline('ledgerfails', range(6), source === 'an array' ? range(6).map(task) : slowly)
      const summary: RunSummary = await runPipeline(db, def, { threads: 1, perWorkerConnections: 1, batchSize: source === 'an array' ? 1000 : 1 })
      assert.deepEqual([summary.seen, summary.done, summary.failed], [6, 5, 1])
      assert.equal(summary.failures.length, 1)
      const failure = summary.failures[0]!
      assert.equal(failure.key, '3')
      assert.match(failure.message, /^task 3 fails on purpose \(the ledger write failed.*the ledger refuses failed rows\)$/)
      assert.doesNotMatch(failure.message, /\n\s+at /, 'a stack trace in the summary')
      assert.deepEqual(await counts(db), { 1: 1, 2: 1, 3: 0, 4: 1, 5: 1, 6: 1 })
      await assertNoUnhandledRejection()
    })
  }
})

describe('Ctrl-C (an aborted signal)', () => {
  test('no task is handed out once the signal is aborted, even when a slot frees; the next run does the rest', async () => {
    const { url } = await freshDatabase('pipeabort')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = regressionPipeline(
      'abort',
      range(10),
      range(10).map((key) => ({ key })),
    )
    // One thread, one connection, one task per message: two tasks in flight at most (the first running, the second queued).
    const controller = new AbortController()
    const summary = await runPipeline(db, def, { threads: 1, perWorkerConnections: 1, tasksPerMessage: 1, signal: controller.signal, progress: abortWhenDone(controller, 1) })
    assert.equal(summary.cancelled, true)
    assert.deepEqual([summary.done, summary.failed], [2, 0], 'a task was handed out after the abort')
    assert.deepEqual(await counts(db), { 1: 1, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 0 })
    const again = await runPipeline(db, def, { threads: 1 })
    assert.deepEqual([again.cancelled, again.skipped, again.done, again.failed], [false, 2, 8, 0])
    assert.ok(Object.values(await counts(db)).every((n) => n === 1))
  })

  test('a task failing with a transient error after the abort (its connection terminated) is not run, not failed: the next run does it', async () => {
    const { url } = await freshDatabase('pipeabortlost')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const controller = new AbortController()
    // Key 2 is in flight when the run is aborted; then the server terminates its connection (57P01).
    const first = regressionPipeline(
      'lost',
      range(6),
      range(6).map((key) => (key === 2 ? { key, sleepMillis: 300, terminate: true } : { key })),
    )
    const summary = await runPipeline(db, first, { threads: 1, perWorkerConnections: 1, tasksPerMessage: 1, retryDelayMillis: 5, signal: controller.signal, progress: abortWhenDone(controller, 1) })
    assert.equal(summary.cancelled, true)
    assert.deepEqual([summary.seen, summary.done, summary.failed], [6, 1, 0])
    assert.deepEqual(summary.failures, [])
    const ledger = await db.query('SELECT key, status FROM pgcrew_ledger ORDER BY key')
    assert.deepEqual(ledger.rows, [{ key: '1', status: 'done' }])
    // The next run (the connection no longer lost) does key 2 and the rest.
    const second = regressionPipeline(
      'lost',
      range(6),
      range(6).map((key) => ({ key })),
    )
    const again = await runPipeline(db, second, { threads: 1 })
    assert.deepEqual([again.skipped, again.done, again.failed], [1, 5, 0])
    assert.deepEqual(await counts(db), { 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1 })
  })
})

describe('loading pipeline modules', () => {
  /** `pgcrew run FILE --threads 1` in this process, against `dbname` through PG* variables. */
  async function pgcrewRun(file: string, dbname = 'postgres'): Promise<{ code: number; stdout: string; stderr: string }> {
    const { host, port, user, password } = server()
    const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname }
    const stdout = collector()
    const stderr = collector()
    const code = await main(['run', file, '--threads', '1'], { stdout: stdout.stream, stderr: stderr.stream, env, isTTY: false })
    return { code, stdout: stdout.text(), stderr: stderr.text() }
  }

  /** The CLI printed `message` as an expected failure: exit 1, one line, no "unexpected error", no stack. */
  function assertCleanFailure(run: { code: number; stderr: string }, message: RegExp): void {
    assert.equal(run.code, 1, run.stderr)
    assert.doesNotMatch(run.stderr, /unexpected error/, run.stderr)
    assert.doesNotMatch(run.stderr, /^\s+at /m, `a stack trace:\n${run.stderr}`)
    assert.match(run.stderr, message)
  }

  function spaceDir(): string {
    const dir = join(scratchDir(), 'dir with space')
    mkdirSync(dir)
    return dir
  }

  test('a missing module in a directory whose name has a space is "not found", not an unexpected error', async () => {
    const file = join(spaceDir(), 'nope.ts')
    await assert.rejects(loadPipeline(file), { code: 'PIPELINE_NOT_FOUND' })
    assertCleanFailure(await pgcrewRun(file), /^pgcrew: no pipeline module at .*\/dir with space\/nope\.ts/)
  })

  test('a pipeline module in a directory whose name has a space loads', async () => {
    const file = join(spaceDir(), 'fine.ts')
    writeFileSync(file, `import { definePipeline } from ${JSON.stringify(pipelineModule)}\nexport default definePipeline({ name: 'fine', worker: ${JSON.stringify(worker.href)}, tasks: [] })\n`)
    assert.equal((await loadPipeline(file)).name, 'fine')
  })

  test('a module that exists but imports a missing module says it could not be loaded, and why', async () => {
    const dir = spaceDir()
    const file = join(dir, 'broken.ts')
    writeFileSync(
      file,
      `import './missing-helper.ts'\nimport { definePipeline } from ${JSON.stringify(pipelineModule)}\nexport default definePipeline({ name: 'broken', worker: ${JSON.stringify(worker.href)}, tasks: [] })\n`,
    )
    await assert.rejects(loadPipeline(file), { code: 'PIPELINE_LOAD_FAILED' })
    const run = await pgcrewRun(file)
    assertCleanFailure(run, /^pgcrew: cannot load pipeline module .*broken\.ts: .*missing-helper\.ts/)
    assert.doesNotMatch(run.stderr, /no pipeline module/)
  })

  test('a directory, or a file that is not a JS/TS module, is refused with a message (no stack)', async () => {
    const dir = spaceDir()
    const notes = join(dir, 'notes.md')
    writeFileSync(notes, '# not a pipeline\n')
    await assert.rejects(loadPipeline(dir), { code: 'PIPELINE_LOAD_FAILED' })
    assertCleanFailure(await pgcrewRun(dir), /^pgcrew: .*dir with space is a directory; give the pipeline module itself/)
    await assert.rejects(loadPipeline(notes), { code: 'PIPELINE_LOAD_FAILED' })
    assertCleanFailure(await pgcrewRun(notes), /^pgcrew: .*notes\.md is not a JavaScript or TypeScript module/)
  })

  test('a definition without tasks, name or worker is refused at load time, before setup runs', async () => {
    const { dbname } = await freshDatabase('pipeshape')
    const dir = spaceDir()
    const cases: Array<[string, string, RegExp]> = [
      ['no-tasks', `{ name: 'notasks', worker: ${JSON.stringify(worker.href)}, setup }`, /pipeline "notasks" needs "tasks": an array, an iterable or async iterable/],
      ['no-name', `{ worker: ${JSON.stringify(worker.href)}, setup, tasks: [] }`, /the pipeline needs a "name": a non-empty string/],
      ['empty-name', `{ name: '', worker: ${JSON.stringify(worker.href)}, setup, tasks: [] }`, /the pipeline needs a "name": a non-empty string/],
      ['no-worker', `{ name: 'noworker', setup, tasks: [] }`, /pipeline "noworker" needs a "worker": the path or URL of a defineWorker module/],
    ]
    for (const [name, definition, message] of cases) {
      const file = join(dir, `${name}.ts`)
      writeFileSync(
        file,
        `import { definePipeline } from ${JSON.stringify(pipelineModule)}\n` +
          `const setup = async (db: any) => { await db.query('CREATE TABLE setup_ran (x int)') }\n` +
          `export default definePipeline(${definition} as any)\n`,
      )
      await assert.rejects(loadPipeline(file), { code: 'PIPELINE_INVALID', message })
      assertCleanFailure(await pgcrewRun(file, dbname), message)
    }
    const setupRan = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'setup_ran'", [], dbname)
    assert.equal(setupRan[0]!.n, 0, 'setup ran for an invalid pipeline')
  })

  test("an error thrown by the pipeline's own setup(), tasks() or isComplete() is reported as the pipeline's, in one line (no stack, not a pgcrew bug)", async () => {
    const { dbname } = await freshDatabase('pipehooks')
    const dir = spaceDir()
    const cases: Array<[string, string, RegExp]> = [
      ['setup', `setup: async () => { throw new Error('setup boom') }, tasks: []`, /^pgcrew: pipeline "hook-setup": setup\(db\) threw setup boom$/m],
      ['tasks', `tasks: async () => { throw new TypeError('tasks boom') }`, /^pgcrew: pipeline "hook-tasks": tasks\(db\) threw TypeError: tasks boom$/m],
      ['complete', `tasks: [{ key: 1 }], isComplete: () => { throw new Error('complete boom') }`, /^pgcrew: pipeline "hook-complete": isComplete\(task\) threw complete boom$/m],
    ]
    for (const [name, body, message] of cases) {
      const file = join(dir, `hook-${name}.ts`)
      writeFileSync(
        file,
        `import { definePipeline } from ${JSON.stringify(pipelineModule)}
export default definePipeline({ name: 'hook-${name}', worker: ${JSON.stringify(worker.href)}, ${body} } as any)
`,
      )
      assertCleanFailure(await pgcrewRun(file, dbname), message)
    }
  })

  test('runPipeline refuses a hand-made definition without tasks before setup runs', async () => {
    const { url } = await freshDatabase('pipeshape2')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    let setupRan = false
    const def = { kind: 'pgcrew.pipeline', name: 'handmade', worker, setup: () => void (setupRan = true) } as unknown as PipelineDefinition
    await assert.rejects(runPipeline(db, def, { threads: 1 }), { code: 'PIPELINE_INVALID', message: /pipeline "handmade" needs "tasks"/ })
    assert.equal(setupRan, false)
  })
})

describe('in process (no worker threads)', () => {
  test('inProcess runs every task once in this thread, on a pool of its own; failures, a lost connection and a rerun behave as in a thread', async () => {
    const { url } = await freshDatabase('inproc')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const keys = range(300)
    const tasks = keys.map((key): RegressionTask => ({ key, ...(key === 7 ? { fail: 'plain' as const } : {}), ...(key === 11 ? { terminate: true } : {}) }))
    // Key 11 loses its connection on every attempt: retried for the (short) window, then failed as a lost connection.
    const first = await runPipeline(db, regressionPipeline('inproc', keys, tasks), { inProcess: true, perWorkerConnections: 3, retryWindowMillis: 1500 })
    assert.deepEqual({ threads: first.threads, inProcess: first.inProcess }, { threads: 1, inProcess: true })
    assert.deepEqual({ done: first.done, failed: first.failed }, { done: 298, failed: 2 })
    assert.ok(first.failures.some((f) => f.key === '7' && /fails on purpose/.test(f.message)))
    assert.ok(
      first.failures.some((f) => f.key === '11' && f.code === '57P01'),
      JSON.stringify(first.failures),
    )
    assert.ok(first.retried > 0)
    const c = await counts(db)
    assert.deepEqual(
      keys.filter((k) => k !== 7 && k !== 11 && c[k] !== 1),
      [],
    )
    assert.equal(c[7], 0, 'a failed task rolled back')
    // The worker's sessions were its own pool's, named as a thread's; none is left once the run ends.
    assert.equal((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgcrew worker%'")).rows[0]!.n, 0)
    // The caller's own Database is untouched (a thread's init discards the pools it inherited; in process they are the caller's).
    assert.equal((await db.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1)
    const again = await runPipeline(
      db,
      regressionPipeline(
        'inproc',
        keys,
        keys.map((key) => ({ key })),
      ),
      { inProcess: true },
    )
    assert.equal(again.skipped, 300 - first.failed)
    assert.equal(again.done, first.failed)
  })

  test('inProcess runs the tasks in the main thread; without it they run in worker threads', async () => {
    const { url } = await freshDatabase('inprocwhere')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await db.query('CREATE TABLE where_run (key int PRIMARY KEY, main_thread boolean NOT NULL)')
    const def = (name: string, from: number) =>
      definePipeline<{ key: number }>({ name, worker: new URL('../fixtures/workers/where-run.ts', import.meta.url), tasks: range(20).map((k) => ({ key: from + k })) })
    await runPipeline(db, def('inproc-where', 0), { inProcess: true })
    await runPipeline(db, def('thread-where', 100), { threads: 1 })
    const { rows } = await db.query<{ main: boolean; n: number }>('SELECT key < 100 AS main, count(*) FILTER (WHERE main_thread)::int AS n FROM where_run GROUP BY 1 ORDER BY 1')
    assert.deepEqual(rows, [
      { main: false, n: 0 },
      { main: true, n: 20 },
    ])
  })

  test('inProcess: a worker whose init hook fails leaves no session of its own behind (a thread would take its sockets with it)', async () => {
    const { url } = await freshDatabase('inprocinit')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const crew = await db.crew({ worker: new URL('../fixtures/workers/init-fails.ts', import.meta.url), inProcess: true, perWorkerConnections: 2 })
    await assert.rejects(crew.run({}), { code: 'WORKER_INIT_FAILED', message: /cannot load the calibration file/ })
    await crew.close()
    // A backend goes a moment after its client has said goodbye: allow it that moment, not the pool's 10 s idle timeout.
    const left = async (): Promise<number> =>
      (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgcrew worker%'")).rows[0]!.n
    assert.ok(await eventually(async () => (await left()) === 0, 3000), `${await left()} worker session(s) left`)
  })

  test('inProcess with threads, a task timeout or heap limits is refused, naming what to drop', async () => {
    const { url } = await freshDatabase('inprocbad')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = regressionPipeline('inprocbad', [1], [{ key: 1 }])
    await assert.rejects(runPipeline(db, def, { inProcess: true, threads: 2 }), { code: 'INVALID_OPTION', message: /cannot take threads: 2 .*drop inProcess, or drop threads: 2/ })
    await assert.rejects(runPipeline(db, def, { inProcess: true, taskTimeoutMillis: 1000 }), { code: 'INVALID_OPTION', message: /cannot take taskTimeoutMillis/ })
  })

  test('pgcrew run --in-process runs the pipeline; with --threads it is a usage error', async () => {
    const { url } = await freshDatabase('inproccli')
    const dir = scratchDir()
    const file = join(dir, 'inproc-pipeline.ts')
    writeFileSync(
      file,
      `import { definePipeline } from ${JSON.stringify(pipelineModule)}
export default definePipeline({
  name: 'inproccli',
  worker: new URL(${JSON.stringify(worker.href)}),
  setup: async (db) => {
    await db.query('CREATE TABLE IF NOT EXISTS counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
    await db.query('INSERT INTO counters SELECT g, 0 FROM generate_series(1, 50) g ON CONFLICT DO NOTHING')
  },
  tasks: Array.from({ length: 50 }, (_, i) => ({ key: i + 1 })),
})
`,
    )
    const out = collector()
    const err = collector()
    const code = await main(['run', file, '--url', url, '--in-process', '--per-worker', '2', '--json'], { stdout: out.stream, stderr: err.stream, env: cleanEnv(), isTTY: false })
    assert.equal(code, 0, err.text())
    assert.deepEqual((({ done, inProcess }) => ({ done, inProcess }))(JSON.parse(out.text())), { done: 50, inProcess: true })
    const bad = collector()
    assert.equal(await main(['run', file, '--url', url, '--in-process', '--threads', '2'], { stdout: collector().stream, stderr: bad.stream, env: cleanEnv(), isTTY: false }), 2)
    assert.match(bad.text(), /--in-process runs the one worker in this process: it takes no --threads/)
  })
})
