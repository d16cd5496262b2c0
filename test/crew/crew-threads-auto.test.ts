// threads: 'auto': a crew starts with one thread of AUTO_PER_WORKER connections and takes another
// into use (up to every core) only while those in use are CPU-bound. What a user sees: which workers
// ran the tasks (summary.perWorker), how many threads the summary reports, and which worker sessions
// the server saw.
import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { AUTO_PER_WORKER } from '../../src/crew/crew.ts'
import { runPipeline } from '../../src/pipeline/pipeline.ts'
import { batchPipeline, counts } from '../fixtures/pipelines/batch.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1)

/** Every counter incremented exactly once. */
async function eachOnce(db: Database, n: number): Promise<void> {
  assert.deepEqual(await counts(db), Object.fromEntries(range(n).map((k) => [k, 1])))
}

/** The worker sessions the server shows while `run` runs, sampled every 20 ms: the names seen, and the most at once. */
async function watchWorkerSessions<T>(url: string, run: () => Promise<T>): Promise<{ result: T; names: Set<string>; most: number }> {
  await using watcher = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
  const names = new Set<string>()
  let most = 0
  let running = true
  const watching = (async () => {
    while (running) {
      const { rows } = await watcher.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgcrew worker %'")
      for (const r of rows) names.add(r.name)
      most = Math.max(most, rows.length)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  try {
    return { result: await run(), names, most }
  } finally {
    running = false
    await watching
  }
}

describe("threads: 'auto'", () => {
  test('tasks that wait on the database stay on one thread with all its connections; the others open none', async () => {
    const { url } = await freshDatabase('autowait')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // ~1.2 s of waiting at 4 connections: several of the crew's busy checks, none of them busy.
    const n = 600
    const {
      result: summary,
      names,
      most,
    } = await watchWorkerSessions(url, () =>
      runPipeline(
        db,
        batchPipeline(
          'autowait',
          range(n).map((key) => ({ key, sleepMillis: 8 })),
        ),
        { threads: 'auto' },
      ),
    )
    assert.equal(summary.done, n)
    assert.equal(Object.keys(summary.perWorker).length, 1, `more than one thread ran tasks: ${JSON.stringify(summary.perWorker)}`)
    assert.equal(summary.threads, 1)
    assert.equal(summary.autoThreads, true)
    // The budget is planned for the most threads auto may take, each with 4 connections.
    assert.equal(summary.budgetPlan.perWorker, AUTO_PER_WORKER)
    assert.equal(summary.budgetPlan.threads, availableParallelism())
    assert.equal(names.size, 1, `worker sessions of more than one thread: ${[...names].join(', ')}`)
    assert.ok(most <= AUTO_PER_WORKER, `${most} worker sessions at once`)
    await eachOnce(db, n)
  })

  test(
    'tasks that keep their thread busy take another thread into use, and each task still runs once',
    { skip: availableParallelism() < 2 ? 'this machine has one core: auto has no second thread to take' : false },
    async () => {
      const { url } = await freshDatabase('autospin')
      await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
      // ~3 s of JavaScript that does not yield on one thread; the second thread joins after about half a second.
      const n = 120
      const { result: summary, names } = await watchWorkerSessions(url, () =>
        runPipeline(
          db,
          batchPipeline(
            'autospin',
            range(n).map((key) => ({ key, spinMillis: 25 })),
          ),
          { threads: 'auto' },
        ),
      )
      assert.equal(summary.done, n)
      const ran = Object.values(summary.perWorker)
      assert.ok(ran.length >= 2, `one thread ran every task: ${JSON.stringify(summary.perWorker)}`)
      assert.ok(
        ran.every((k) => k >= 10),
        `a thread in use ran almost nothing: ${JSON.stringify(summary.perWorker)}`,
      )
      assert.equal(summary.threads, ran.length)
      assert.ok(names.size >= 2, `the server saw the sessions of ${names.size} worker thread(s)`)
      await eachOnce(db, n)
    },
  )

  test('a thread in use that dies mid-run is replaced: its tasks are retried, every task runs once, the run ends', async () => {
    const { url } = await freshDatabase('autocrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Busy tasks (so a second thread may join) and one that kills its thread on its first attempt.
    const n = 80
    const tasks = range(n).map((key) => (key === 20 ? { key, crashAfterMillis: 50 } : { key, spinMillis: 20 }))
    const summary = await runPipeline(db, batchPipeline('autocrash', tasks), { threads: 'auto', retryDelayMillis: 5 })
    assert.equal(summary.done, n)
    assert.equal(summary.failed, 0)
    assert.ok(summary.retried >= 1, 'nothing was retried: the thread did not die')
    await eachOnce(db, n)
  })

  test("a thread's start-up (module import, connecting, the init hook) does not count as busy: waiting tasks after a slow init stay on one thread", async () => {
    const { url } = await freshDatabase('autoinit')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // The init hook spins for 1 s (five of the crew's busy checks), then ~0.6 s of waiting tasks.
    const n = 300
    const before = process.env.PGCREW_TEST_INIT_SPIN_MILLIS
    process.env.PGCREW_TEST_INIT_SPIN_MILLIS = '1000'
    let summary
    try {
      summary = await runPipeline(
        db,
        batchPipeline(
          'autoinit',
          range(n).map((key) => ({ key, sleepMillis: 8 })),
        ),
        { threads: 'auto' },
      )
    } finally {
      if (before === undefined) delete process.env.PGCREW_TEST_INIT_SPIN_MILLIS
      else process.env.PGCREW_TEST_INIT_SPIN_MILLIS = before
    }
    assert.equal(summary.done, n)
    assert.equal(Object.keys(summary.perWorker).length, 1, `more than one thread ran tasks: ${JSON.stringify(summary.perWorker)}`)
    assert.equal(summary.threads, 1)
    await eachOnce(db, n)
  })

  test('with room for one thread only, a thread that exits mid-run is replaced, its tasks go to the new one, and the run ends', async () => {
    const { url } = await freshDatabase('autoexit')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Budget 4 = main 2 + run history 1 + one thread of one connection.
    const n = 10
    const tasks = range(n).map((key) => (key === 4 ? { key, crashAfterMillis: 50 } : { key }))
    const run = runPipeline(db, batchPipeline('autoexit', tasks), { threads: 'auto', connectionBudget: 4, retryDelayMillis: 5 })
    let timer: NodeJS.Timeout | undefined
    const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 15_000)))
    const summary = await Promise.race([run, hung]).finally(() => clearTimeout(timer))
    assert.notEqual(summary, 'hung', 'the run did not end within 15 s of a thread exiting')
    if (summary === 'hung') return
    assert.deepEqual([summary.budgetPlan.threads, summary.budgetPlan.perWorker], [1, 1])
    assert.equal(summary.done, n)
    assert.ok(summary.retried >= 1, 'nothing was retried: the thread did not die')
    await eachOnce(db, n)
  })

  test('over the connection budget, auto gives up threads before connections per thread: its first thread keeps the run concurrent', async () => {
    const { url } = await freshDatabase('autoclamp')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Budget 6 = main 2 + run history 1 + 3 for workers: one thread of 3 (not 3 threads of 1).
    const summary = await runPipeline(db, batchPipeline('autoclamp', [{ key: 1 }, { key: 2 }]), { threads: 'auto', connectionBudget: 6 })
    assert.equal(summary.done, 2)
    assert.deepEqual([summary.budgetPlan.threads, summary.budgetPlan.perWorker, summary.budgetPlan.clamped], [1, 3, true])
  })

  test('threads takes a number or auto; another string is refused, naming both', async () => {
    const { url } = await freshDatabase('autotypo')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await assert.rejects(runPipeline(db, batchPipeline('autotypo', [{ key: 1 }]), { threads: 'Auto' as never }), {
      code: 'INVALID_OPTION',
      message: "threads must be a whole number ≥ 1 or 'auto', not 'Auto'",
    })
  })

  test('inProcess has one worker in this thread, so it refuses threads: auto', async () => {
    const { url } = await freshDatabase('autoinproc')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await assert.rejects(runPipeline(db, batchPipeline('autoinproc', [{ key: 1 }]), { threads: 'auto', inProcess: true }), {
      code: 'INVALID_OPTION',
      message: /inProcess runs the crew's one worker in this thread: it takes no threads: 'auto'/,
    })
  })
})
