import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { admin, atEnd, cleanEnv, eventually, freshDatabase, scratchDir, server } from '../helpers.ts'

const fixture = (name: string) => new URL(`../fixtures/workers/${name}.ts`, import.meta.url)

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
  const cli = new URL('../../src/cli.ts', import.meta.url).pathname
  const pipeline = new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname
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

describe('pipelines', () => {
  test('a worker crash mid-run is retried; every key is done exactly once', async () => {
    const { url } = await freshDatabase('pipecrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = countersPipeline(
      'crashy',
      Array.from({ length: 50 }, (_, i) => ({ key: i + 1, crash: i + 1 === 7 })),
    )
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
      const def = countersPipeline(
        `numbers-${run}`,
        Array.from({ length: 20 }, (_, i) => ({ key: i + 1 })),
      )
      const summary = await runPipeline(db, def, { threads: 2 })
      assert.equal(summary.done, 20)
      const keys = Object.keys(summary.perWorker)
      assert.ok(keys.length >= 1 && keys.every((k) => k === '1' || k === '2'), `${run} run: workers ${keys.join(', ')}`)
      const { rows } = await db.query<{ worker: number }>('SELECT DISTINCT worker FROM pgcrew_ledger WHERE pipeline = $1 ORDER BY worker', [def.name])
      assert.deepEqual(
        rows.map((r) => String(r.worker)),
        [...keys].sort(),
        `${run} run: the ledger names the same workers`,
      )
    }
  })

  test('permanent failures are recorded with key, attempts and message; a rerun retries only them', async () => {
    const { url } = await freshDatabase('pipefail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = countersPipeline(
      'failing',
      [-1, 1, 2, 3, 4, 5].map((key) => ({ key })),
    )
    const summary = await runPipeline(db, def, { threads: 2 })
    assert.equal(summary.failed, 1)
    assert.deepEqual(
      summary.failures.map((f) => [f.key, f.attempts, f.message]),
      [['-1', 1, 'permanent failure for key -1']],
    )
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
    assert.ok(await eventually(async () => (await ledgerCount(dbname)) > 200, 120_000), 'the first run never got going')
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
    assert.deepEqual(
      rows.filter((r) => r.n !== 1),
      [],
      'some key ran twice or never',
    )
  })
})

describe('pgcrew run', () => {
  test('progress follows stderr: a bar with rate and ETA when stderr is a terminal, even with stdout redirected', async () => {
    const { Writable } = await import('node:stream')
    const { main } = await import('../../src/cli/cli-main.ts')
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
    const code = await main(['run', new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname, '--threads', '2'], { stdout: out.stream, stderr: err.stream, env, isTTY: false })
    assert.equal(code, 0, err.text())
    assert.match(err.text(), /\d+% \d+\/200 \| [\d.]+\/s \| ETA/)
    assert.doesNotMatch(err.text(), /progress: /)
    assert.match(out.text(), /^tasks +200 seen, 200 done/m)
  })

  test('Ctrl-C in a terminal (SIGINT to the whole process group) with the temporary server: the server outlives it, the summary is printed, nothing is recorded as failed', async () => {
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname
    const pipeline = new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname
    // No PG* settings and no profile: `pgcrew run` starts its own temporary server, in a project of
    // its own (in this checkout's .pgcrew/data, every run of the suite resumed the last one's ledger
    // until a run found all 3000 tasks done and never showed progress). detached: its own process
    // group, as a terminal's foreground job has.
    const project = scratchDir()
    chmodSync(project, 0o755) // as root, the server runs as postgres and must reach .pgcrew/data
    writeFileSync(join(project, 'package.json'), '{ "name": "ctrl-c-project" }\n')
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'run', pipeline, '--threads', '2'], {
      cwd: project,
      env: cleanEnv({ PGCREW_FIXTURE_N: '3000', PGCREW_FIXTURE_SLOW: '1' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    atEnd(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // ended, as it should have
      }
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
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND (application_name LIKE 'pgcrew worker %' OR state LIKE 'idle in transaction%')", [
      dbname,
    ])
    assert.equal(left[0]!.n, 0)
    const partial = await ledgerCount(dbname)
    assert.ok(partial < 3000)

    const second = run()
    assert.equal(await new Promise((r) => second.once('exit', r)), 0)
    const rows = await counters(url)
    assert.equal(rows.length, 3000)
    assert.deepEqual(
      rows.filter((r) => r.n !== 1),
      [],
    )
  })

  test('maxFailures ends a run that keeps failing (a wrong table name) early, and the summary says why', async () => {
    const { url } = await freshDatabase('pipemaxfail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = definePipeline({
      name: 'wrongtable',
      worker: fixture('history'),
      setup: async (d) => void (await d.query('CREATE TABLE IF NOT EXISTS history_out (key int PRIMARY KEY)')),
      tasks: Array.from({ length: 5000 }, (_, i) => ({ key: i + 1, fail: true })),
    })
    const summary = await runPipeline(db, def, { threads: 2, maxFailures: 5 })
    assert.equal(summary.done, 0)
    // Running tasks finish after the fifth failure, but nothing more is handed out.
    assert.ok(summary.failed >= 5 && summary.failed < 200, `${summary.failed} failed`)
    assert.equal(summary.cancelled, false)
    assert.match(summary.stopReason ?? '', /^stopped early: 5 tasks failed, the most allowed \(maxFailures 5\); the last: \[42P01\] relation "no_such_table" does not exist$/)
    const ledger = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pgcrew_ledger WHERE status = 'failed'")
    assert.equal(ledger.rows[0]!.n, summary.failed)
    await assert.rejects(runPipeline(db, def, { maxFailures: 0 }), { code: 'INVALID_OPTION' })
  })
})
