// The fault suite: a pipeline whose tasks increment a per-key counter survives killed connections,
// server restarts and outages, SIGKILL of `pgcrew run`, a full server and dying worker threads, with
// every counter at exactly 1 afterwards and nothing left behind. Each test is bounded and stops by
// itself; each prints its figures (rounds survived, tasks lost, tasks doubled, failures surfaced).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, test, type TestContext } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { definePipeline, runPipeline, type RunSummary } from '../../src/pipeline/pipeline.ts'
import { lineProgress, silentProgress, type ProgressReporter, type ProgressState } from '../../src/pipeline/pipeline-progress.ts'
import { sleep } from '../../src/database/connection-retry.ts'
import { startTempCluster, type TempCluster } from '../../src/cluster/temp-cluster.ts'
import type { FaultTask } from '../fixtures/workers/faults.ts'
import { admin, cleanEnv, collector, eventually, freshDatabase, server } from '../helpers.ts'

const worker = new URL('../fixtures/workers/faults.ts', import.meta.url)
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1)

/** A pipeline over the fault worker; setup creates the counters (one per key, at 0). */
function faultPipeline(name: string, tasks: FaultTask[] | (() => AsyncIterable<FaultTask>), keys: number[], setup?: () => Promise<void>) {
  return definePipeline<FaultTask>({
    name,
    worker,
    setup: async (db) => {
      await db.query('CREATE TABLE IF NOT EXISTS counters (key int PRIMARY KEY, n int NOT NULL DEFAULT 0)')
      await db.query('INSERT INTO counters SELECT unnest($1::int[]), 0 ON CONFLICT DO NOTHING', [keys])
      await setup?.()
    },
    tasks,
  })
}

/** Run SQL on a URL with a client of its own. */
async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query(text, params)).rows as T[]
  } finally {
    await client.end()
  }
}

/** Keys never done (counter 0) and keys done twice or more: both must be 0. */
async function tally(url: string, n: number): Promise<{ lost: number; doubled: number }> {
  const rows = await sql<{ n: number }>(url, 'SELECT n FROM counters ORDER BY key')
  assert.equal(rows.length, n)
  return { lost: rows.filter((r) => r.n === 0).length, doubled: rows.filter((r) => r.n > 1).length }
}

/** Print a test's figures (the README's reliability section quotes them) and check nothing was lost or doubled. */
function figures(t: TestContext, f: { rounds: number; lost: number; doubled: number; failures: number }): void {
  t.diagnostic(`figures: rounds survived ${f.rounds}, tasks lost ${f.lost}, tasks doubled ${f.doubled}, failures surfaced ${f.failures}`)
  assert.deepEqual([f.lost, f.doubled], [0, 0], 'some key never ran, or ran twice')
}

/** Sessions still open on a database (after the run and its Database closed, there must be none). */
async function backendsOn(url: string, dbname: string): Promise<number> {
  const u = new URL(url)
  u.pathname = '/postgres'
  return (await sql<{ n: number }>(u.toString(), 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [dbname]))[0]!.n
}

async function assertNothingLeft(url: string, dbname: string): Promise<void> {
  assert.ok(await eventually(async () => (await backendsOn(url, dbname)) === 0, 10_000), 'a pgcrew backend was left behind')
}

/** A progress reporter that calls `onUpdate` (to inject faults as the run goes) and then `inner`. */
function watching(onUpdate: (s: ProgressState) => void, inner: ProgressReporter = silentProgress): ProgressReporter {
  return { start: (total) => inner.start(total), stop: (s) => inner.stop(s), update: (s) => (onUpdate(s), inner.update(s)) }
}

/** Stop the server, keep it down for `downMillis`, start it again. */
async function outage(cluster: TempCluster, downMillis: number): Promise<void> {
  await cluster.stopServer()
  await sleep(downMillis)
  await cluster.startServer()
}

describe('killed connections', () => {
  test('a task whose connection is killed between its two statements (idle in transaction) is retried, not failed', async (t) => {
    const { url, dbname } = await freshDatabase('faultidle')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = faultPipeline('idle-kill', [{ key: 1, pauseMillis: 1500 }, { key: 2 }], [1, 2])
    const killing = (async () => {
      // Only the first attempt pauses long enough to be caught idle in its transaction.
      const found = await eventually(
        async () =>
          (await admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'pgcrew worker%' AND state = 'idle in transaction'", [dbname])).length > 0,
        30_000,
      )
      assert.ok(found, 'the task was never seen idle in its transaction')
    })()
    const summary = await runPipeline(db, def, { threads: 1 })
    await killing
    await db.close()
    assert.deepEqual(summary.failures, [])
    assert.deepEqual([summary.done, summary.failed], [2, 0])
    assert.ok(summary.retried >= 1, 'the killed attempt was not retried')
    figures(t, { rounds: 1, ...(await tally(url, 2)), failures: summary.failed })
    await assertNothingLeft(url, dbname)
  })

  test('every pgcrew backend (main thread and workers) killed again and again while a run goes on: each key done once, nothing failed', async (t) => {
    const { url, dbname } = await freshDatabase('faultkill')
    const n = 400
    const def = faultPipeline(
      'kills',
      range(n).map((key) => ({ key, pauseMillis: 15 })),
      range(n),
    )
    let stop = false
    let rounds = 0
    let idleInTransaction = 0
    let running!: () => void
    const firstDone = new Promise<void>((resolve) => (running = resolve))
    const killer = (async () => {
      await firstDone
      while (!stop) {
        const killed = await admin<{ state: string }>("SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", [dbname])
        if (killed.length > 0) rounds++
        idleInTransaction += killed.filter((k) => k.state === 'idle in transaction').length
        await sleep(200)
      }
    })()
    const db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    let summary: RunSummary
    try {
      // Small batches: the main thread's done-key look-ups are killed too.
      summary = await runPipeline(db, def, { threads: 2, batchSize: 50, progress: watching((s) => s.done > 0 && running()) })
    } finally {
      stop = true
      await killer
      await db.close()
    }
    t.diagnostic(`kill rounds ${rounds}, of them backends caught idle in a transaction ${idleInTransaction}, retries ${summary.retried}`)
    assert.deepEqual(summary.failures, [])
    assert.equal(summary.done + summary.skipped, n)
    assert.ok(rounds >= 3, `only ${rounds} kill rounds landed`)
    assert.ok(idleInTransaction >= 1, 'no kill landed between two statements of a task')
    figures(t, { rounds, ...(await tally(url, n)), failures: summary.failed })
    await assertNothingLeft(url, dbname)
  })
})

describe('server restarts and outages', () => {
  test('a restart and then a 4-second outage in the middle of a run: it waits, says "server unreachable", and completes with no failure', async (t) => {
    const cluster = await startTempCluster()
    try {
      const n = 300
      const def = faultPipeline(
        'outage',
        range(n).map((key) => ({ key, pauseMillis: 10 })),
        range(n),
      )
      const lines = collector()
      let faults: Promise<void> = Promise.resolve()
      let phase = 0
      let rounds = 0
      const progress = watching(
        (s) => {
          if (phase === 0 && s.done >= 40) {
            phase = 1
            faults = faults.then(() => outage(cluster, 0)).then(() => void rounds++)
          }
          if (phase === 1 && s.done >= 150) {
            phase = 2
            faults = faults.then(() => outage(cluster, 4000)).then(() => void rounds++)
          }
        },
        lineProgress(lines.stream, 250),
      )
      await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2 })
      const summary = await runPipeline(db, def, { threads: 2, progress })
      await faults
      await db.close()
      assert.equal(rounds, 2, 'the run ended before both faults')
      assert.deepEqual(summary.failures, [])
      assert.equal(summary.done + summary.skipped, n)
      assert.match(lines.text(), /server unreachable, retrying for \d+ s more/)
      figures(t, { rounds, ...(await tally(cluster.url, n)), failures: summary.failed })
      await assertNothingLeft(cluster.url, 'postgres')
    } finally {
      await cluster.stop()
    }
    assert.equal(existsSync(cluster.socketDir), false, 'the data directory was left behind')
  })

  test('an outage longer than the retry window fails the tasks it caught, their failure rows are written once the server is back, and a rerun completes', async (t) => {
    await using cluster = await startTempCluster()
    const n = 60
    const def = faultPipeline(
      'window',
      range(n).map((key) => ({ key, pauseMillis: 100 })),
      range(n),
    )
    const workersUp = async () => (await sql<{ n: number }>(cluster.url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgcrew worker%'"))[0]!.n === 2
    let faults: Promise<void> | undefined
    const progress = watching((s) => {
      // Both workers started first: a worker that has to start during an outage longer than the
      // window fails the run (WORKER_INIT_FAILED), which is not what this test is about.
      if (!faults && s.done >= 10) faults = eventually(workersUp, 30_000).then(() => outage(cluster, 3500))
    })
    const db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2 })
    // A 2.5 s window: tasks caught by the 3.5 s outage give up; their failure rows wait for the server.
    const summary = await runPipeline(db, def, { threads: 2, retryWindowMillis: 2500, progress })
    await faults
    assert.ok(summary.failed >= 1, 'no task outlasted the window')
    for (const f of summary.failures) assert.doesNotMatch(f.message, /ledger write failed/)
    const rows = await sql<{ key: string }>(cluster.url, "SELECT key FROM pgcrew_ledger WHERE status = 'failed' ORDER BY key::int")
    assert.deepEqual(rows.map((r) => r.key).sort(), summary.failures.map((f) => f.key).sort(), 'a failure is missing from the ledger')
    const again = await runPipeline(db, def, { threads: 2 })
    await db.close()
    assert.deepEqual([again.done, again.failed], [summary.failed, 0])
    figures(t, { rounds: 1, ...(await tally(cluster.url, n)), failures: summary.failed })
    await assertNothingLeft(cluster.url, 'postgres')
  })

  test("the main thread's own queries wait for the server: ledger creation and the done-key look-up during an outage", async (t) => {
    await using cluster = await startTempCluster()
    const faults: Promise<void>[] = []
    // The server goes away right after setup (so the ledger is created during the outage)…
    const afterSetup = async () => {
      await cluster.stopServer()
      faults.push(sleep(2000).then(() => cluster.startServer()))
    }
    // …and again between the first and the second batch (so the second look-up meets it).
    async function* tasks(): AsyncGenerator<FaultTask> {
      for (const key of range(5)) yield { key }
      assert.ok(await eventually(async () => (await sql<{ n: number }>(cluster.url, 'SELECT count(*)::int AS n FROM pgcrew_ledger'))[0]!.n === 5, 30_000))
      await cluster.stopServer()
      faults.push(sleep(2000).then(() => cluster.startServer()))
      for (const key of range(10).slice(5)) yield { key }
    }
    await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 2 })
    const summary = await runPipeline(db, faultPipeline('main-thread', tasks, range(10), afterSetup), { threads: 1, batchSize: 5 })
    await Promise.all(faults)
    await db.close()
    assert.deepEqual([summary.done, summary.failed], [10, 0])
    figures(t, { rounds: 2, ...(await tally(cluster.url, 10)), failures: summary.failed })
    await assertNothingLeft(cluster.url, 'postgres')
  })
})

describe('the pgcrew run process killed', () => {
  test('SIGKILL of the whole `pgcrew run` three times, then a rerun: every key done exactly once', async (t) => {
    const { url, dbname } = await freshDatabase('faultsigkill')
    const n = 1000
    const { host, port, user, password } = server()
    const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname, PGCREW_FIXTURE_N: String(n), PGCREW_FIXTURE_SLOW: '1' }
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname
    const pipeline = new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname
    const run = () => spawn(process.execPath, ['--import', 'tsx', cli, 'run', pipeline, '--threads', '2', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    const ledgerCount = async (): Promise<number> => {
      const exists = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'pgcrew_ledger'", [], dbname)
      return exists[0]!.n === 0 ? 0 : (await admin<{ n: number }>('SELECT count(*)::int AS n FROM pgcrew_ledger', [], dbname))[0]!.n
    }
    let partial = 0
    for (let round = 1; round <= 3; round++) {
      const child = run()
      const from = partial
      assert.ok(await eventually(async () => (await ledgerCount()) > from + 100, 60_000), `run ${round} never got going`)
      child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
      partial = await ledgerCount()
      assert.ok(partial < n, `run ${round} finished before it was killed`)
    }
    // The server ends a killed client's sessions (rolling back its open transactions) on its own.
    await assertNothingLeft(url, dbname)
    const last = run()
    let out = ''
    last.stdout.on('data', (d) => (out += d))
    const code = await new Promise((r) => last.once('exit', r))
    assert.equal(code, 0)
    const summary = JSON.parse(out) as RunSummary
    assert.deepEqual([summary.skipped, summary.done, summary.failed], [partial, n - partial, 0])
    const { lost, doubled } = await (async () => {
      const rows = await admin<{ n: number }>('SELECT n FROM counters', [], dbname)
      assert.equal(rows.length, n)
      return { lost: rows.filter((r) => r.n === 0).length, doubled: rows.filter((r) => r.n > 1).length }
    })()
    figures(t, { rounds: 3, lost, doubled, failures: summary.failed })
    await assertNothingLeft(url, dbname)
  })
})

describe('a full server', () => {
  test("a server whose free slots another role's sessions hold: workers refused at start (53300) wait, and the run completes once slots free up", async (t) => {
    // The log names the role of each refused session: the runner's refusals are its workers' starts.
    await using cluster = await startTempCluster({ settings: { max_connections: 12, log_line_prefix: '%u@' } })
    await sql(cluster.url, "CREATE ROLE runner LOGIN PASSWORD 'runner-pw'; CREATE ROLE other LOGIN PASSWORD 'other-pw'")
    await sql(cluster.url, 'CREATE DATABASE work OWNER runner')
    const as = (role: string, dbname: string) => {
      const u = new URL(cluster.url)
      u.username = role
      u.password = `${role}-pw`
      u.pathname = `/${dbname}`
      return u.toString()
    }
    await using db = new Database({ connectionString: as('runner', 'work'), env: cleanEnv(), max: 2 })
    await db.connect()
    // Another role takes every slot left (a superuser's reserved ones excepted)…
    const held: pg.Client[] = []
    for (let i = 0; i < 20; i++) {
      const c = new pg.Client({ connectionString: as('other', 'postgres') })
      c.on('error', () => {})
      try {
        await c.connect()
        held.push(c)
      } catch {
        break
      }
    }
    assert.ok(held.length >= 8, `only ${held.length} sessions held`)
    const refusedRunner = () => /runner@FATAL: +(sorry, too many clients|remaining connection slots are reserved)/.test(cluster.serverLog())
    // …and gives them back 5 s after a worker was first refused: longer than a worker start used to wait (about 3 s).
    const release = (async () => {
      assert.ok(await eventually(async () => refusedRunner(), 60_000), 'no worker met the full server')
      await sleep(5000)
      await Promise.all(held.map((c) => c.end()))
    })()
    const n = 40
    const summary = await runPipeline(
      db,
      faultPipeline(
        'full',
        range(n).map((key) => ({ key })),
        range(n),
      ),
      { threads: 2, connectionBudget: 4 },
    )
    await release
    await db.close()
    assert.deepEqual([summary.done, summary.failed], [n, 0])
    figures(t, { rounds: 1, ...(await tally(as('runner', 'work'), n)), failures: summary.failed })
    await assertNothingLeft(cluster.url, 'work')
  })
})

describe('worker threads that die', () => {
  test('a worker that throws outside a task, one that exits and one that runs out of memory: their tasks are retried, each key done once', async (t) => {
    const { url, dbname } = await freshDatabase('faultcrash')
    const n = 60
    const crash: Record<number, FaultTask['crash']> = { 5: 'throw-outside', 20: 'exit', 40: 'oom' }
    const def = faultPipeline(
      'crashes',
      range(n).map((key) => ({ key, crash: crash[key] })),
      range(n),
    )
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const summary = await runPipeline(db, def, { threads: 2, resourceLimits: { maxOldGenerationSizeMb: 48 } })
    await db.close()
    assert.deepEqual(summary.failures, [])
    assert.deepEqual([summary.done, summary.failed], [n, 0])
    assert.ok(summary.retried >= 3, `${summary.retried} retries for 3 crashes`)
    figures(t, { rounds: 3, ...(await tally(url, n)), failures: summary.failed })
    await assertNothingLeft(url, dbname)
  })
})
