import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import pg from 'pg'
import { describe, test } from 'node:test'
import { Database } from '../src/database.ts'
import { definePipeline, runPipeline } from '../src/pipeline.ts'
import { startTempCluster } from '../src/temp-cluster.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, server } from './helpers.ts'
import counterPipeline from './fixtures/pipelines/counter.ts'

const fixture = (name: string) => new URL(`./fixtures/workers/${name}.ts`, import.meta.url)

async function counters(url: string): Promise<{ key: number; n: number }[]> {
  const db = new Database({ connectionString: url, env: cleanEnv() })
  try {
    return (await db.query('SELECT key, n FROM counters ORDER BY key')).rows
  } finally {
    await db.close()
  }
}

/** `pgcrew run` of the 3000-key counter pipeline in a child process, against `dbname` via PG* variables. */
function counterRunner(dbname: string, extraArgs: string[] = []) {
  const { host, port, user, password } = server()
  const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname, PGCREW_FIXTURE_N: '3000', PGCREW_FIXTURE_SLOW: '1' }
  const cli = new URL('../src/cli.ts', import.meta.url).pathname
  const pipeline = new URL('./fixtures/pipelines/counter.ts', import.meta.url).pathname
  return { password, run: () => spawn(process.execPath, ['--import', 'tsx', cli, 'run', pipeline, '--threads', '2', ...extraArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] }) }
}

/** How many keys the ledger of `dbname` holds (0 before the ledger exists). */
async function ledgerCount(dbname: string): Promise<number> {
  const exists = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'pgcrew_ledger'", [], dbname)
  if (exists[0]!.n === 0) return 0
  return (await admin<{ n: number }>('SELECT count(*)::int AS n FROM pgcrew_ledger', [], dbname))[0]!.n
}

/** A pipeline over the counter worker with its own keys, creating and filling the counters table. */
function countersPipeline(name: string, tasks: Array<{ key: number; crash?: boolean }>) {
  return definePipeline({
    name,
    worker: fixture('counter'),
    setup: async (d) => {
      await d.query('CREATE TABLE IF NOT EXISTS counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
      await d.query('INSERT INTO counters SELECT unnest($1::int[]), 0 ON CONFLICT DO NOTHING', [tasks.map((t) => t.key)])
    },
    tasks,
  })
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
    db.onConnect(new URL('./fixtures/hooks/statement-timeout.ts', import.meta.url).pathname)
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    assert.deepEqual(await crew.run({ op: 'sql', sql: 'SHOW statement_timeout' }), [{ statement_timeout: '4321ms' }])
    assert.equal((await db.query('SHOW statement_timeout')).rows[0].statement_timeout, '4321ms')

    await using other = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    other.onConnect(async () => {})
    await assert.rejects(other.crew({ worker: fixture('echo'), threads: 1 }), { code: 'INVALID_OPTION', message: /cannot travel to worker threads; pass it as a module path/ })
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
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND (application_name LIKE 'pgcrew worker %' OR state LIKE 'idle in transaction%')", [dbname])
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
    assert.deepEqual(results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')), ['ok', 'ok', 'ok'])
    assert.equal(crew.crashes, 0)
  })

  test('with taskTimeoutMillis, a worker still runs perWorkerConnections tasks at once', async () => {
    const { url } = await freshDatabase('crewtimeoutconc')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1, perWorkerConnections: 2, taskTimeoutMillis: 10_000 })
    const both = Promise.all([1, 2].map(() => crew.run({ op: 'sql', sql: 'SELECT pg_sleep(1.5)' })))
    const sleepers = async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgcrew worker%' AND state = 'active' AND query LIKE '%pg_sleep(1.5)%'"))[0]!.n
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
    assert.deepEqual(outcomes.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')), ['WORKER_CRASHED', 'WORKER_CRASHED'])
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
  for (const pooling of ['pooled', 'per-transaction'] as const) test(`8 threads against max_connections = 20 finish with zero "too many clients" (${pooling})`, async () => {
    await using cluster = await startTempCluster({ settings: { max_connections: 20 } })
    await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2, pooling })
    const pipeline = definePipeline({ ...counterPipeline, tasks: Array.from({ length: 400 }, (_, i) => ({ key: i + 1 })) })
    await db.query('CREATE TABLE counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
    await db.query('INSERT INTO counters SELECT g, 0 FROM generate_series(1, 400) g')
    const summary = await runPipeline(db, pipeline, { threads: 8, perWorkerConnections: 3, retries: 0 })
    assert.equal(summary.failed, 0, JSON.stringify(summary.failures))
    assert.equal(summary.done, 400)
    assert.ok(summary.connections <= 17, summary.budget)
    assert.match(summary.budget, /max_connections 20/)
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

describe('pipelines', () => {
  test('a worker crash mid-run is retried; every key is done exactly once', async () => {
    const { url } = await freshDatabase('pipecrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = countersPipeline('crashy', Array.from({ length: 50 }, (_, i) => ({ key: i + 1, crash: i + 1 === 7 })))
    const summary = await runPipeline(db, def, { threads: 2, retryDelayMillis: 5 })
    assert.equal(summary.done, 50)
    assert.equal(summary.failed, 0)
    assert.ok(summary.retried >= 1)
    assert.ok((await counters(url)).every((r) => r.n === 1))
    const again = await runPipeline(db, def, { threads: 2 })
    assert.equal(again.skipped, 50)
    assert.equal(again.done, 0)
  })

  test('worker numbers run #1…#N in every run of a process, in the summary and in the ledger', async () => {
    const { url } = await freshDatabase('pipenumbers')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Each run starts new threads; thread ids keep counting up across runs, worker numbers do not.
    for (const run of ['first', 'second']) {
      const def = countersPipeline(`numbers-${run}`, Array.from({ length: 20 }, (_, i) => ({ key: i + 1 })))
      const summary = await runPipeline(db, def, { threads: 2 })
      assert.equal(summary.done, 20)
      const keys = Object.keys(summary.perWorker)
      assert.ok(keys.length >= 1 && keys.every((k) => k === '1' || k === '2'), `${run} run: workers ${keys.join(', ')}`)
      const { rows } = await db.query<{ worker: number }>('SELECT DISTINCT worker FROM pgcrew_ledger WHERE pipeline = $1 ORDER BY worker', [def.name])
      assert.deepEqual(rows.map((r) => String(r.worker)), [...keys].sort(), `${run} run: the ledger names the same workers`)
    }
  })

  test('permanent failures are recorded with key, attempts and message; a rerun retries only them', async () => {
    const { url } = await freshDatabase('pipefail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = countersPipeline('failing', [-1, 1, 2, 3, 4, 5].map((key) => ({ key })))
    const summary = await runPipeline(db, def, { threads: 2 })
    assert.equal(summary.failed, 1)
    assert.deepEqual(summary.failures.map((f) => [f.key, f.attempts, f.message]), [['-1', 1, 'permanent failure for key -1']])
    const ledger = await db.query("SELECT key, status, attempts, error FROM pgcrew_ledger WHERE pipeline = 'failing' AND status = 'failed'")
    assert.deepEqual(ledger.rows, [{ key: '-1', status: 'failed', attempts: 1, error: 'permanent failure for key -1' }])
    const again = await runPipeline(db, def, { threads: 2 })
    assert.equal(again.skipped, 5)
    assert.equal(again.failed, 1)
  })

  test('a run killed with SIGKILL part-way and rerun ends with every key done exactly once', async () => {
    const { url, dbname } = await freshDatabase('pipekill')
    const { run } = counterRunner(dbname, ['--json'])
    const first = run()
    assert.ok(await eventually(async () => (await ledgerCount(dbname)) > 200, 30_000), 'the first run never got going')
    first.kill('SIGKILL')
    await new Promise((r) => first.once('exit', r))
    const partial = await ledgerCount(dbname)
    assert.ok(partial < 3000, 'the first run finished before it was killed')

    const second = run()
    let out = ''
    second.stdout.on('data', (d) => (out += d))
    const code = await new Promise((r) => second.once('exit', r))
    assert.equal(code, 0)
    const summary = JSON.parse(out)
    assert.equal(summary.skipped, partial)
    assert.equal(summary.done, 3000 - partial)
    const rows = await counters(url)
    assert.equal(rows.length, 3000)
    assert.deepEqual(rows.filter((r) => r.n !== 1), [], 'some key ran twice or never')
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
    const child = fork(new URL('./fixtures/forked-child.ts', import.meta.url).pathname, {
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

describe('pgcrew run', () => {
  test('progress follows stderr: a bar with rate and ETA when stderr is a terminal, even with stdout redirected', async () => {
    const { Writable } = await import('node:stream')
    const { main } = await import('../src/cli/main.ts')
    const { dbname } = await freshDatabase('progress')
    const { host, port, user, password } = server()
    const capture = (isTTY: boolean) => {
      const chunks: string[] = []
      const stream = Object.assign(new Writable({ write: (c, _e, cb) => (chunks.push(String(c)), cb()) }), { isTTY, columns: 120 })
      return { stream, text: () => chunks.join('') }
    }
    const out = capture(false)
    const err = capture(true)
    const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname, PGCREW_FIXTURE_N: '200' }
    const code = await main(['run', new URL('./fixtures/pipelines/counter.ts', import.meta.url).pathname, '--threads', '2'], { stdout: out.stream, stderr: err.stream, env, isTTY: false })
    assert.equal(code, 0, err.text())
    assert.match(err.text(), /\d+% \| \d+\/200 \| \d+ tasks\/s \| ETA/)
    assert.doesNotMatch(err.text(), /^progress: /m)
    assert.match(out.text(), /^tasks +200 seen, 200 done/m)
  })

  test("Ctrl-C in a terminal (SIGINT to the whole process group) with the temporary server: the server outlives it, the summary is printed, nothing is recorded as failed", async () => {
    const cli = new URL('../src/cli.ts', import.meta.url).pathname
    const pipeline = new URL('./fixtures/pipelines/counter.ts', import.meta.url).pathname
    // No PG* settings and no profile: `pgcrew run` starts its own temporary server. detached: its
    // own process group, as a terminal's foreground job has.
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'run', pipeline, '--threads', '2'], {
      env: cleanEnv({ PGCREW_FIXTURE_N: '3000', PGCREW_FIXTURE_SLOW: '1' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    assert.ok(await eventually(async () => /progress: \d+\/\d+ done=[1-9]\d{2,}/.test(err), 60_000), `no progress seen:\n${err}`)
    process.kill(-child.pid!, 'SIGINT')
    assert.equal(await exited, 1)
    assert.match(out, /cancelled: run again to resume/)
    assert.match(out, /, 0 failed,/)
    assert.doesNotMatch(err, /terminating connection|\n\s+at /)
  })

  test('Ctrl-C stops handing out tasks, prints the summary, exits non-zero; the next run resumes', async () => {
    const { url, dbname } = await freshDatabase('pipeint')
    const { run, password } = counterRunner(dbname)
    const first = run()
    let out = ''
    let err = ''
    first.stdout.on('data', (d) => (out += d))
    first.stderr.on('data', (d) => (err += d))
    assert.ok(await eventually(async () => (await ledgerCount(dbname)) > 100, 30_000))
    first.kill('SIGINT')
    const code = await new Promise((r) => first.once('exit', r))
    assert.equal(code, 1)
    assert.match(out, /cancelled: run again to resume/)
    assert.doesNotMatch(err, /\n\s+at /, 'a stack trace was printed')
    assert.ok(!out.includes(password) && !err.includes(password))
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND (application_name LIKE 'pgcrew worker %' OR state LIKE 'idle in transaction%')", [dbname])
    assert.equal(left[0]!.n, 0)
    const partial = await ledgerCount(dbname)
    assert.ok(partial < 3000)

    const second = run()
    assert.equal(await new Promise((r) => second.once('exit', r)), 0)
    const rows = await counters(url)
    assert.equal(rows.length, 3000)
    assert.deepEqual(rows.filter((r) => r.n !== 1), [])
  })
})
