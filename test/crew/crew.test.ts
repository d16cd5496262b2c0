import assert from 'node:assert/strict'
import pg from 'pg'
import { describe, test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { Database } from '../../src/database/database.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { startTempCluster } from '../../src/cluster/temp-cluster.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, server } from '../helpers.ts'
import counterPipeline from '../fixtures/pipelines/counter.ts'

const fixture = (name: string) => new URL(`../fixtures/workers/${name}.ts`, import.meta.url)

async function counters(url: string): Promise<{ key: number; n: number }[]> {
  const db = new Database({ connectionString: url, env: cleanEnv() })
  try {
    return (await db.query('SELECT key, n FROM counters ORDER BY key')).rows
  } finally {
    await db.close()
  }
}

describe('crew workers', () => {
  test('the init hook runs once per worker, and a pool created at import time is discarded', async () => {
    const { url, dbname } = await freshDatabase('crew')
    await admin('CREATE TABLE inits (worker int)', [], dbname)
    process.env.PGCREW_FIXTURE_URL = url
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('import-pool'), threads: 2 })
    const results = await Promise.all(Array.from({ length: 12 }, () => crew.run<{ workerId: number; importPoolConnections: number; leakedPoolEnded: boolean }>({})))
    for (const r of results) assert.equal(r.leakedPoolEnded, true, 'a task ran before its realm discarded the import-time pool')
    const leaked = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'import-time-pool'")
    assert.equal(leaked[0]!.n, 0, 'the import-time pool still holds connections')
    const inits = await admin<{ worker: number; n: number }>('SELECT worker, count(*)::int AS n FROM inits GROUP BY worker', [], dbname)
    assert.ok(inits.length >= 1 && inits.length <= 2)
    for (const row of inits) assert.equal(row.n, 1, `worker ${row.worker} ran its init hook ${row.n} times`)
    const names = await admin<{ application_name: string }>("SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'pgcrew worker %'", [dbname])
    assert.ok(names.length >= 1, 'worker connections are tagged with their worker')
  })

  test('onConnect hooks given as module paths run in workers; a function hook is refused with a clear error', async () => {
    const { url } = await freshDatabase('crewhooks')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    db.onConnect(new URL('../fixtures/hooks/statement-timeout.ts', import.meta.url).pathname)
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    assert.deepEqual(await crew.run({ op: 'sql', sql: 'SHOW statement_timeout' }), [{ statement_timeout: '4321ms' }])
    assert.equal((await db.query('SHOW statement_timeout')).rows[0].statement_timeout, '4321ms')

    await using other = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    other.onConnect(async () => {})
    await assert.rejects(other.crew({ worker: fixture('echo'), threads: 1 }), { code: 'INVALID_OPTION', message: /cannot travel to worker threads; pass it as a module path/ })
  })

  test('a worker module sees the globals a thread has, as the main thread does (pgcrew lends pg a navigator only while it loads)', async () => {
    const { url } = await freshDatabase('crewglobals')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    const here = { navigator: 'navigator' in globalThis, typeofNavigator: typeof (globalThis as { navigator?: unknown }).navigator }
    assert.deepEqual(await crew.run({ op: 'globals' }), here)
  })

  /** Load the crew's worker file in a thread as piscina does, run two tasks through it, and say what the thread saw. */
  async function crewThread(workerData: Record<string, unknown>): Promise<Record<string, unknown>> {
    // A Node 20 thread has tsx's import hooks only once it registers them itself (as the crew's worker file does).
    const fixtureUrl = new URL('../fixtures/crew-thread-loads.ts', import.meta.url).href
    const thread = new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(fixtureUrl)}) })`, {
      eval: true,
      workerData: { crewWorkerFile: new URL('../../workers/crew-worker.ts', import.meta.url).href, ...workerData },
    })
    try {
      return await new Promise((resolve, reject) => {
        thread.once('message', resolve)
        thread.once('error', reject)
        thread.once('exit', (code) => reject(new Error(`the thread exited (${code}) before it reported`)))
      })
    } finally {
      await thread.terminate()
    }
  }

  test("a crew thread loads pg and pgcrew only for its first task: one that gets none (threads: 'auto' on light work) costs its start alone", async () => {
    const { url } = await freshDatabase('crewlazy')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await db.connect()
    const seen = await crewThread({
      snapshot: db.snapshot(),
      workerModule: fixture('echo').href,
      perWorkerConnections: 1,
      channel: 'pgcrew-test-lazy-thread',
      workerNumbers: new Int32Array(new SharedArrayBuffer(4)),
      host: 'test',
    })
    const { rows } = await db.query('SELECT current_user AS u')
    // The worker number is taken with the first task, once, by the thread's two first tasks together.
    assert.deepEqual(seen, {
      started: false,
      numberAfterStart: 0,
      numberAfterTasks: 1,
      outcomes: [
        { ok: true, user: rows[0].u, workerId: 1 },
        { ok: true, user: rows[0].u, workerId: 1 },
      ],
      afterTasks: true,
    })
  })

  test('a crew thread that cannot load pgcrew fails each task as a failed worker init (permanent, not a crash to retry), not by hanging', async () => {
    // workerData without its shared worker-number slot: the runtime cannot start in this thread.
    const seen = (await crewThread({ workerModule: fixture('echo').href, perWorkerConnections: 1, channel: 'pgcrew-test-lazy-fail', host: 'test' })) as {
      outcomes: Array<{ ok: boolean; code: string; transient: boolean; message: string; workerId: number; threadId?: number }>
    }
    assert.equal(seen.outcomes.length, 2)
    for (const outcome of seen.outcomes) {
      assert.deepEqual({ ...outcome, message: undefined }, { ok: false, code: 'WORKER_INIT_FAILED', transient: false, message: undefined, workerId: -1, threadId: undefined })
      assert.match(outcome.message, /^this worker thread could not load pgcrew: /)
    }
  })

  test('a task may run in a db.scope of its own: one backend for all its statements, and nothing of its session reaches the next task', async () => {
    const { url } = await freshDatabase('crewscope')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // One thread, one connection in it: every task borrows the backend the one before used.
    await using crew = await db.crew({ worker: fixture('scoped'), threads: 1, perWorkerConnections: 1 })
    const defaultWorkMem = (await db.query('SHOW work_mem')).rows[0].work_mem
    const results = []
    for (let n = 1; n <= 4; n++) results.push(await crew.run<{ found: { temp: string | null; work_mem: string }; pids: number[]; rows: { n: number; work_mem: string } }>({ n }))
    for (const [i, r] of results.entries()) {
      assert.deepEqual(r.found, { temp: null, work_mem: defaultWorkMem }, `task ${i + 1} found an earlier task's session state`)
      assert.deepEqual(r.rows, { n: 3, work_mem: `${1001 + i}kB` })
      assert.equal(new Set(r.pids).size, 1, `task ${i + 1} ran on backends ${r.pids}`)
    }
    assert.equal(new Set(results.map((r) => r.pids[0])).size, 1, 'the scope destroyed its connection instead of resetting it')
  })

  test("workers use the master's role (becomeUser: writes refused) and dbversion", async () => {
    const { dbname } = await freshDatabase('crewrole')
    const base = dbname
    await admin(`CREATE DATABASE "${base}_v2"`)
    const reader = await freshRole('crewreader')
    try {
      await admin(`GRANT CREATE ON SCHEMA public TO "${reader.name}"`, [], `${base}_v2`)
      const { host, port } = server()
      await using db = new Database({ host, port, dbname: base, user: reader.name, password: reader.password, env: cleanEnv(), max: 2 })
      await db.changeVersion('v2')
      await db.becomeUser()
      await using crew = await db.crew({ worker: fixture('echo'), threads: 2 })
      const who = await crew.run<{ u: string; d: string }>({ op: 'whoami' })
      assert.equal(who.u, reader.name)
      assert.equal(who.d, `${base}_v2`)
      await assert.rejects(crew.run({ op: 'sql', sql: 'CREATE TABLE nope (x int)' }), { code: '25006' })
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${base}_v2" WITH (FORCE)`)
    }
  })

  test('a task error keeps its code; a worker that exits mid-task is replaced and the crew keeps going', async () => {
    const { url } = await freshDatabase('crewcrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 2 })
    await assert.rejects(crew.run({ op: 'throw' }), { code: 'ON_PURPOSE', message: 'task failed on purpose' })
    await assert.rejects(crew.run({ op: 'throw-object' }), { code: 'TASK_FAILED', message: 'a non-Error value was thrown: {"reason":"not an Error"}' })
    await assert.rejects(crew.run({ op: 'exit' }), { code: 'WORKER_CRASHED' })
    await assert.rejects(crew.run({ op: 'throw-outside' }), { code: 'WORKER_CRASHED', message: /uncaught in a timer/ })
    const after = await Promise.all([1, 2, 3].map(() => crew.run<{ u: string }>({ op: 'whoami' })))
    assert.equal(after.length, 3)
    assert.equal(crew.crashes, 2)
  })

  test('a worker that runs out of memory is replaced: its task fails with WORKER_CRASHED and the next task runs', async () => {
    const { url } = await freshDatabase('crewoom')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, resourceLimits: { maxOldGenerationSizeMb: 48 } })
    const before = await crew.run<{ pid: number }>({ op: 'whoami' })
    await assert.rejects(crew.run({ op: 'oom' }), { code: 'WORKER_CRASHED', message: /memory/ })
    const after = await crew.run<{ pid: number; u: string }>({ op: 'whoami' })
    assert.notEqual(after.pid, before.pid, 'the replacement worker has its own connection')
    assert.equal(crew.crashes, 1)
  })

  test('init failure fails fast: tasks reject with the init error, nothing hangs', async () => {
    const { url } = await freshDatabase('crewinit')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('init-fails'), threads: 2 })
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => crew.run({})))
    for (const r of results) {
      assert.equal(r.status, 'rejected')
      assert.equal((r as PromiseRejectedResult).reason.code, 'WORKER_INIT_FAILED')
      assert.match((r as PromiseRejectedResult).reason.message, /cannot load the calibration file/)
    }
    assert.ok(crew.initError)
    const pipeline = definePipeline({ name: 'never', worker: fixture('init-fails'), tasks: [{ key: 1 }, { key: 2 }] })
    await assert.rejects(runPipeline(db, pipeline, { threads: 2 }), { code: 'WORKER_INIT_FAILED' })
  })

  test('close lets workers end their pools: no open transaction, no worker connection, no EOF', async () => {
    const { url, dbname } = await freshDatabase('crewclose')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const crew = await db.crew({ worker: fixture('echo'), threads: 2 })
    await Promise.all([1, 2, 3, 4].map(() => crew.run({ op: 'sleep' })))
    await crew.close()
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND (application_name LIKE 'pgcrew worker %' OR state LIKE 'idle in transaction%')", [
      dbname,
    ])
    assert.equal(left[0]!.n, 0)
  })
})

describe('the toolkit inside workers', () => {
  for (const pooling of ['pooled', 'per-transaction'] as const) {
    test(`settings, prepare, cursor and advisory locks work in crew workers (${pooling})`, async () => {
      const { url } = await freshDatabase('crewtoolkit')
      await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2, pooling })
      await using crew = await db.crew({ worker: fixture('echo'), threads: 2 })
      const results = await Promise.all([1, 2, 3].map(() => crew.run({ op: 'toolkit' })))
      for (const r of results) assert.deepEqual(r, { dateStyle: 'ISO, MDY', prepared: 42, rowsRead: 1000, locked: true })
    })
  }
})

describe('crew.map and timeouts', () => {
  test('map runs every task with bounded concurrency and reports each failure beside its task', async () => {
    const { url } = await freshDatabase('crewmap')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 2 })
    const tasks = [{ op: 'sleep' }, { op: 'throw' }, { op: 'sleep' }, { op: 'whoami' }, { op: 'sleep' }]
    const seen: string[] = []
    for await (const r of crew.map(tasks, { concurrency: 2 })) seen.push(r.error ? `${r.task.op}:${r.error.code}` : r.task.op)
    assert.deepEqual(seen.sort(), ['sleep', 'sleep', 'sleep', 'throw:ON_PURPOSE', 'whoami'])
  })

  test("a timed task's clock starts when it starts: tasks waiting their turn do not time out", async () => {
    const { url } = await freshDatabase('crewtimeoutqueue')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, taskTimeoutMillis: 3000 })
    // A worker's first task includes its init, which a loaded machine can stretch: get it done first.
    await crew.run({ op: 'whoami' })
    // One at a time, 1.2 s each: the third starts about 2.4 s after it was handed over and ends at
    // about 3.6 s, past the 3 s limit if the clock had started at hand-over.
    const results = await Promise.allSettled([1, 2, 3].map(() => crew.run({ op: 'sql', sql: 'SELECT pg_sleep(1.2)' })))
    assert.deepEqual(
      results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')),
      ['ok', 'ok', 'ok'],
    )
    assert.equal(crew.crashes, 0)
  })

  test('with taskTimeoutMillis, a worker still runs perWorkerConnections tasks at once', async () => {
    const { url } = await freshDatabase('crewtimeoutconc')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, perWorkerConnections: 2, taskTimeoutMillis: 10_000 })
    const both = Promise.all([1, 2].map(() => crew.run({ op: 'sql', sql: 'SELECT pg_sleep(1.5)' })))
    const sleepers = async () =>
      (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgcrew worker%' AND state = 'active' AND query LIKE '%pg_sleep(1.5)%'"))[0]!.n
    assert.ok(await eventually(async () => (await sleepers()) === 2), 'the two tasks did not run side by side')
    await both
  })

  test('a result that cannot cross threads (a pg result) fails that task with RESULT_NOT_CLONEABLE; the thread lives on', async () => {
    const { url } = await freshDatabase('crewclone')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('raw-result'), threads: 1 })
    await assert.rejects(crew.run({}), { code: 'RESULT_NOT_CLONEABLE', message: /return plain data such as result\.rows/ })
    assert.equal(crew.crashes, 0)
    // In a pipeline the worker's return value is not used: such tasks are done, not crashed and retried.
    await db.query('CREATE TABLE counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
    await db.query('INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g')
    const pipeline = definePipeline({ name: 'raw', worker: fixture('raw-result'), tasks: Array.from({ length: 10 }, (_, i) => ({ key: i + 1 })) })
    const summary = await runPipeline(db, pipeline, { threads: 1 })
    assert.deepEqual([summary.done, summary.skipped, summary.failed, summary.retried], [10, 0, 0, 0])
    assert.ok((await counters(url)).every((r) => r.n === 1))
  })

  test('crashes counts threads that died, not the tasks that failed with them', async () => {
    const { url } = await freshDatabase('crewcrashcount')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, perWorkerConnections: 2 })
    await crew.run({ op: 'whoami' })
    const outcomes = await Promise.allSettled([crew.run({ op: 'sleep' }), crew.run({ op: 'exit' })])
    assert.deepEqual(
      outcomes.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')),
      ['WORKER_CRASHED', 'WORKER_CRASHED'],
    )
    assert.equal(crew.crashes, 1)
    await assert.rejects(db.crew({ worker: fixture('echo'), perWorkerConnections: 0 }), { code: 'INVALID_OPTION', message: /perWorkerConnections must be a whole number/ })
    // A thread that dies while close() waits for the work in flight is a crash too (regression).
    const dying = crew.run({ op: 'exit' }).catch((e: { code: string }) => e.code)
    await new Promise((r) => setTimeout(r, 20))
    await crew.close()
    assert.equal(await dying, 'WORKER_CRASHED')
    assert.equal(crew.crashes, 2)
  })

  test('a task over taskTimeoutMillis fails with TASK_TIMEOUT and the crew carries on', async () => {
    const { url } = await freshDatabase('crewtimeout')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, taskTimeoutMillis: 2000 })
    await crew.run({ op: 'whoami' })
    await assert.rejects(crew.run({ op: 'sql', sql: 'SELECT pg_sleep(30)' }), { code: 'TASK_TIMEOUT' })
    assert.equal((await crew.run<{ u: string }>({ op: 'whoami' })).u, server().user)
    // The abandoned query does not run on for 30 s: the server notices its client is gone.
    const stillSleeping = async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"))[0]!.n
    assert.ok(await eventually(async () => (await stillSleeping()) === 0, 5000), 'the timed-out query kept running on the server')
  })
})

const db2 = (url: string) => new Database({ connectionString: url, env: cleanEnv(), max: 2 })

describe('a clean close in the server log', () => {
  test('closing a crew after a pipeline leaves no "unexpected EOF on client connection" in the server log', async () => {
    await using cluster = await startTempCluster({ settings: { log_min_messages: 'info' } })
    await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2 })
    await db.query('CREATE TABLE counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
    const pipeline = definePipeline({ ...counterPipeline, tasks: Array.from({ length: 100 }, (_, i) => ({ key: i + 1 })) })
    const summary = await runPipeline(db, pipeline, { threads: 2 })
    assert.equal(summary.done, 100)
    await using crew = await db.crew({ worker: fixture('echo'), threads: 2 })
    await Promise.all([1, 2, 3, 4].map(() => crew.run({ op: 'sleep' })))
    await crew.close()
    await db.close()
    await new Promise((r) => setTimeout(r, 200))
    assert.doesNotMatch(cluster.serverLog(), /unexpected EOF|could not receive data from client/)

    // The check can fail: destroy() (the forced path) cuts a transaction in flight, and the server says so.
    await using master = db2(cluster.url)
    const forced = await master.crew({ worker: fixture('echo'), threads: 1 })
    const holding = forced.run({ op: 'hold-transaction' }).catch(() => {})
    await eventually(async () => (await master.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction'")).rows[0].n > 0)
    await forced.destroy()
    await holding
    assert.ok(await eventually(async () => /unexpected EOF on client connection with an open transaction/.test(cluster.serverLog())))
  })
})

describe('connection budget', () => {
  for (const pooling of ['pooled', 'per-transaction'] as const)
    test(`8 threads against max_connections = 20 finish with zero "too many clients" (${pooling})`, async () => {
      await using cluster = await startTempCluster({ settings: { max_connections: 20 } })
      await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2, pooling })
      const pipeline = definePipeline({ ...counterPipeline, tasks: Array.from({ length: 400 }, (_, i) => ({ key: i + 1 })) })
      await db.query('CREATE TABLE counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
      await db.query('INSERT INTO counters SELECT g, 0 FROM generate_series(1, 400) g')
      const summary = await runPipeline(db, pipeline, { threads: 8, perWorkerConnections: 3, retries: 0 })
      assert.equal(summary.failed, 0, JSON.stringify(summary.failures))
      assert.equal(summary.done, 400)
      assert.ok(summary.connections <= 17, summary.budgetExplanation)
      assert.match(summary.budgetExplanation, /max_connections 20/)
      const rows = await counters(cluster.url)
      assert.ok(rows.every((r) => r.n === 1))
    })

  test('a worker that finds no free connection slot at start waits a little and retries, instead of failing the crew for good', async () => {
    await using cluster = await startTempCluster({ settings: { max_connections: 6, superuser_reserved_connections: 0 } })
    await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 1 })
    await db.connect()
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    // Another program takes every slot left before the worker's first task connects…
    const blockers: pg.Client[] = []
    for (;;) {
      const c = new pg.Client({ connectionString: cluster.url })
      c.on('error', () => {})
      try {
        await c.connect()
        blockers.push(c)
      } catch {
        break
      }
    }
    assert.ok(blockers.length > 0)
    const who = crew.run<{ u: string }>({ op: 'whoami' })
    // …and gives them back a moment later.
    await new Promise((r) => setTimeout(r, 400))
    await Promise.all(blockers.map((c) => c.end()))
    assert.equal((await who).u, new URL(cluster.url).username)
    assert.equal(crew.initError, undefined)
  })

  test('an explicit budget that cannot fit is refused with the arithmetic, or clamped and said so', async () => {
    const { url } = await freshDatabase('budget')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await assert.rejects(db.crew({ worker: fixture('echo'), threads: 4, connectionBudget: 4, onOverBudget: 'refuse' }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'BUDGET_EXCEEDED')
      assert.match(e.message, /wanted 2 \(main\) \+ 4 threads × 1 = 6/)
      return true
    })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 4, connectionBudget: 4 })
    assert.equal(crew.threads, 2)
    assert.match(crew.budget.explanation, /wanted 2 \(main\) \+ 4 threads × 1 = 6 — clamped to 2 \(main\) \+ 2 threads × 1 = 4$/)
  })
})

describe('initProcess', () => {
  test('a forked process discards its import-time Database and reconnects as the master', async () => {
    const { fork } = await import('node:child_process')
    const { url } = await freshDatabase('forked')
    const reader = await freshRole('forkreader')
    const { host, port } = server()
    await using db = new Database({ host, port, dbname: 'postgres', user: reader.name, password: reader.password, env: cleanEnv() })
    await db.becomeUser()
    const child = fork(new URL('../fixtures/forked-child.ts', import.meta.url).pathname, {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      env: { ...process.env, PGCREW_FIXTURE_URL: url },
    })
    child.send({ snapshot: db.snapshot() })
    const reply = await new Promise<{ u: string; app: string; early: number; earlyClosed: boolean }>((resolve) => child.once('message', resolve as never))
    await new Promise((r) => child.once('exit', r))
    assert.equal(reply.u, reader.name)
    assert.match(reply.app, /^pgcrew process \d+$/)
    assert.equal(reply.early, 0)
    assert.equal(reply.earlyClosed, true)
  })
})
