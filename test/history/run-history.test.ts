// Every run records itself in the record store: its facts, its end, its samples and failures; a
// run whose process was killed shows as crashed, told by its lock, which died with the process.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { promisify } from 'node:util'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { getRun, listRuns, threadsText } from '../../src/history/run-list.ts'
import { batchPipeline } from '../fixtures/pipelines/batch.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, server } from '../helpers.ts'

const worker = new URL('../fixtures/workers/history.ts', import.meta.url)

/** The share of a pg_sleep a worker may measure (the server's wall clock may run fast against the worker's monotonic one). */
const SLEW = 0.95

function historyPipeline(name: string, tasks: Array<{ key: number; fail?: boolean; sleepMillis?: number }>) {
  return definePipeline({
    name,
    worker,
    setup: async (d) => void (await d.query('CREATE TABLE IF NOT EXISTS history_out (key int PRIMARY KEY)')),
    tasks,
  })
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

describe('run history', () => {
  test('a run records its facts, its end and its summary; runs lists it as completed', async () => {
    const { url, dbname } = await freshDatabase('histrun')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const summary = await runPipeline(
      db,
      historyPipeline(
        'facts',
        range(40).map((key) => ({ key })),
      ),
      { threads: 2 },
    )
    assert.equal(summary.done, 40)
    assert.equal(typeof summary.runId, 'number')
    assert.equal(summary.history, undefined)
    const runs = await listRuns(db)
    assert.equal(runs.length, 1)
    const run = runs[0]!
    assert.equal(run.id, summary.runId)
    assert.deepEqual(
      { pipeline: run.pipeline, status: run.status, pid: run.pid, role: run.role, database: run.database, threads: run.threads, done: run.done, failed: run.failed },
      { pipeline: 'facts', status: 'completed', pid: process.pid, role: server().user, database: dbname, threads: 2, done: 40, failed: 0 },
    )
    assert.equal(run.connections, summary.connections)
    assert.ok(run.host && run.endedAt && run.endedAt >= run.startedAt)
    assert.deepEqual(run.ended?.summary, JSON.parse(JSON.stringify(summary)))
    // The last sample has every task; the samples are readings of the run's session.
    const last = await db.query<{ value: number }>("SELECT value FROM pgcrew.readings WHERE session_id = $1 AND series = 'run.done' ORDER BY at DESC LIMIT 1", [run.id])
    assert.equal(last.rows[0]!.value, 40)
    // Its lock went with the end: nothing of the run holds a connection any more.
    const locks = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    assert.equal(locks.rows[0]!.n, 0)
  })

  test("a threads: 'auto' run is listed with the threads it took and the most it could, as its summary said them", async () => {
    const { url } = await freshDatabase('histauto')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Tasks that wait on the database: auto keeps them on one thread of the budget's several.
    const summary = await runPipeline(
      db,
      batchPipeline(
        'histauto',
        range(100).map((key) => ({ key, sleepMillis: 5 })),
      ),
      { threads: 'auto' },
    )
    assert.equal(summary.threads, 1)
    const run = (await getRun(db, summary.runId!))!
    assert.deepEqual([run.threads, run.threadsUpTo], [1, availableParallelism()])
    assert.equal(threadsText(run), `1 (auto, up to ${availableParallelism()}), ${summary.connections} connections at most`)
    // A fixed number of threads has no "up to".
    const fixed = await runPipeline(db, batchPipeline('histfixed', [{ key: 1 }]), { threads: 1 })
    const plain = (await getRun(db, fixed.runId!))!
    assert.deepEqual([plain.threads, plain.threadsUpTo, threadsText(plain)], [1, null, `1, ${fixed.connections} connections at most`])
  })

  test('with a main pool of one connection the run is recorded at once: its lock has a connection of its own, counted in the budget', async () => {
    const { url } = await freshDatabase('histmax1')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const started = Date.now()
    const summary = await runPipeline(
      db,
      historyPipeline(
        'max1',
        range(20).map((key) => ({ key })),
      ),
      { threads: 1 },
    )
    // The lock once took the pool's only connection: every query behind it waited 30 s, then the history was given up.
    assert.equal(summary.history, undefined)
    assert.equal(summary.done, 20)
    assert.ok(Date.now() - started < 20_000, `the run took ${Date.now() - started} ms`)
    assert.equal((await getRun(db, summary.runId!))?.status, 'completed')
    assert.deepEqual({ main: summary.budgetPlan.main, beside: summary.budgetPlan.beside, total: summary.budgetPlan.total }, { main: 1, beside: 1, total: 3 })
    assert.match(summary.budgetExplanation, /1 \(main\) \+ 1 \(run history\) \+ 1 thread × 1 = 3/)
  })

  test('a run whose liveness connection is killed takes its lock again and is not shown as crashed', async () => {
    const { url } = await freshDatabase('histrelock')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await using watcher = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const run = runPipeline(
      db,
      historyPipeline(
        'relock',
        range(60).map((key) => ({ key, sleepMillis: 50 })),
      ),
      { threads: 1 },
    )
    assert.ok(await eventually(async () => (await listRuns(watcher).catch(() => []))[0]?.status === 'running', 30_000), 'the run never showed as running')
    const { rows } = await watcher.query<{ n: number }>(
      "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'pgcrew run history' AND datname = current_database()",
    )
    assert.equal(rows[0]!.n, 1)
    // Read in the moment the lock is free: the grace sees it taken again (without it, the run was written as crashed).
    assert.equal((await listRuns(watcher))[0]?.status, 'running')
    // Taken again on a new session: the run is running, not crashed, while it goes on.
    assert.ok(
      await eventually(
        async () =>
          (await watcher.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgcrew run history' AND datname = current_database()")).rows[0]!.n === 1,
        10_000,
      ),
      'no new liveness session',
    )
    assert.equal((await listRuns(watcher))[0]?.status, 'running')
    const summary = await run
    assert.equal(summary.done, 60)
    assert.equal((await getRun(watcher, summary.runId!))?.status, 'completed')
  })

  test('failures are events of the run, and a run stopped by maxFailures is failed with the reason', async () => {
    const { url } = await freshDatabase('histfail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const summary = await runPipeline(
      db,
      historyPipeline(
        'wrong',
        range(2000).map((key) => ({ key, fail: true })),
      ),
      { threads: 2, maxFailures: 3 },
    )
    const run = (await getRun(db, summary.runId!))!
    assert.equal(run.status, 'failed')
    assert.match(run.reason ?? '', /^stopped early: 3 tasks failed, the most allowed \(maxFailures 3\)/)
    const events = await db.query<{ severity: string; description: string; data: { kind: string; code?: string } }>(
      'SELECT severity, description, data FROM pgcrew.events WHERE session_id = $1 ORDER BY id',
      [run.id],
    )
    const failures = events.rows.filter((e) => e.data.kind === 'failure')
    assert.equal(failures.length, summary.failed)
    assert.ok(failures.every((e) => e.severity === 'error' && e.data.code === '42P01'))
    assert.match(failures[0]!.description, /^task \d+ failed after 1 attempt\(s\): \[42P01\] relation "no_such_table" does not exist$/)
    assert.ok(events.rows.some((e) => e.data.kind === 'stopped'))
  })

  test('the slowest tasks are kept (the N slowest, slowest first) and runs show lists them', async () => {
    const { url, dbname } = await freshDatabase('histslow')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Keys 7, 21 and 33 sleep 1.5 s, key 12 0.7 s, the rest not at all.
    const sleeps: Record<number, number> = { 7: 1500, 21: 1500, 33: 1500, 12: 700 }
    const summary = await runPipeline(
      db,
      historyPipeline(
        'slow',
        range(40).map((key) => ({ key, sleepMillis: sleeps[key] })),
      ),
      { threads: 2, history: { slowestTasks: 5 } },
    )
    assert.equal(summary.done, 40)
    const run = (await getRun(db, summary.runId!))!
    assert.equal(run.slowest.length, 5)
    assert.deepEqual(
      run.slowest
        .slice(0, 3)
        .map((t) => t.key)
        .sort(),
      ['21', '33', '7'],
      JSON.stringify(run.slowest),
    )
    // pg_sleep counts the server's wall clock, which NTP may slew against the monotonic clock the
    // worker times with (seen: 1,496.8 ms for a pg_sleep(1.5) on a machine just booted): a margin.
    assert.ok(
      run.slowest.slice(0, 3).every((t) => t.millis >= 1500 * SLEW && t.worker >= 1 && t.worker <= 2),
      JSON.stringify(run.slowest),
    )
    assert.equal(run.slowest[3]!.key, '12')
    assert.ok(run.slowest[3]!.millis >= 700 * SLEW && run.slowest[3]!.millis < 1500 * SLEW, JSON.stringify(run.slowest))
    // Timed in the worker, not per batch: the tasks sent with a slow one did not take as long.
    assert.ok(run.slowest[4]!.millis < 700 * SLEW, JSON.stringify(run.slowest))
    const { host, port, user, password } = server()
    const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname }
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname
    const shown = await promisify(execFile)(process.execPath, ['--import', 'tsx', cli, 'runs', 'show', String(run.id)], { env })
    const lines = shown.stdout.split('\n')
    const at = lines.indexOf('slowest tasks:')
    assert.ok(at >= 0, shown.stdout)
    assert.deepEqual(
      lines.slice(at + 1, at + 6).map((l) => /^ +[\d.]+ ms {2}(\d+) \(worker #\d\)$/.exec(l)?.[1]),
      run.slowest.map((t) => t.key),
    )
    const json = JSON.parse((await promisify(execFile)(process.execPath, ['--import', 'tsx', cli, 'runs', 'show', String(run.id), '--json'], { env })).stdout)
    assert.deepEqual(json.slowest, JSON.parse(JSON.stringify(run.slowest)))
  })

  test('samples of a long run are thinned: at most maxSamples per series, spread over the whole run', async () => {
    const { url } = await freshDatabase('histthin')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const started = Date.now()
    const summary = await runPipeline(
      db,
      historyPipeline(
        'thin',
        range(60).map((key) => ({ key, sleepMillis: 40 })),
      ),
      { threads: 2, history: { sampleMillis: 20, maxSamples: 12 } },
    )
    const took = Date.now() - started
    const { rows } = await db.query<{ n: number; first: Date; last: Date; max: number }>(
      "SELECT count(*)::int AS n, min(at) AS first, max(at) AS last, max(value) AS max FROM pgcrew.readings WHERE session_id = $1 AND series = 'run.done'",
      [summary.runId],
    )
    const r = rows[0]!
    // 60 tasks of 40 ms on 2 threads: over a second, 50+ samples at 20 ms without thinning.
    assert.ok(took > 1000, `the run took ${took} ms`)
    assert.ok(r.n <= 12 && r.n >= 5, `${r.n} samples kept`)
    assert.equal(r.max, 60)
    assert.ok(r.last.getTime() - r.first.getTime() > took / 2, 'the samples kept span the run')
  })

  test('a role that may not create the store records no history, and the run goes on and says so', async () => {
    const { dbname } = await freshDatabase('histro')
    const role = await freshRole('histro')
    await admin(`GRANT CREATE ON SCHEMA public TO "${role.name}"`, [], dbname)
    await admin(`REVOKE CREATE ON DATABASE "${dbname}" FROM PUBLIC`, [], dbname)
    const { host, port } = server()
    await using db = new Database({ connectionString: `postgres://${role.name}:${role.password}@${host}:${port}/${dbname}`, env: cleanEnv(), max: 2 })
    const summary = await runPipeline(
      db,
      historyPipeline(
        'nohist',
        range(5).map((key) => ({ key })),
      ),
      { threads: 1 },
    )
    assert.equal(summary.done, 5)
    assert.equal(summary.runId, undefined)
    assert.match(summary.history ?? '', /^the run history is not recorded: .*permission denied/)
  })

  test('a run whose process is SIGKILLed shows as crashed, told by its lock (not by time), and is recorded so', async () => {
    const { dbname, url } = await freshDatabase('histkill')
    const { host, port, user, password } = server()
    const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname, HISTORY_N: '100000', HISTORY_SLEEP_MS: '20' }
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname
    const pipeline = new URL('../fixtures/pipelines/history.ts', import.meta.url).pathname
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'run', pipeline, '--threads', '1'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    const exited = new Promise((resolve) => child.on('exit', resolve))
    try {
      await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
      // Running: it has a session and holds its lock.
      // Running: its session is there with its facts (they follow the session by one statement).
      assert.ok(
        await eventually(async () => {
          const run = (await listRuns(db).catch(() => []))[0]
          return run?.status === 'running' && run.pid !== null
        }, 60_000),
        'the run never showed as running',
      )
      // The slowest tasks are written with the samples: a run that dies still has them.
      assert.ok(await eventually(async () => ((await listRuns(db))[0]?.slowest.length ?? 0) > 0, 30_000), 'no slowest tasks were written while the run went on')
      const running = (await listRuns(db))[0]!
      assert.equal(running.pid, child.pid)
      child.kill('SIGKILL')
      await exited
      // The server notices the dead connection (and frees its lock) when the socket closes.
      assert.ok(await eventually(async () => (await listRuns(db))[0]?.status === 'crashed', 30_000), 'the killed run is not shown as crashed')
      const crashed = (await getRun(db, running.id))!
      assert.equal(crashed.status, 'crashed')
      assert.ok(crashed.endedAt, 'the crash was recorded: the session is stopped')
      assert.equal(crashed.ended?.status, 'crashed')
      assert.ok(crashed.slowest.length > 0 && crashed.slowest.every((t) => t.millis >= 20), JSON.stringify(crashed.slowest))
    } finally {
      child.kill('SIGKILL')
      await exited
    }
  })
})
