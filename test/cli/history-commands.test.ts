// pgcrew status | failures | retry | reset | runs against a real server, as a user runs them after
// a pipeline with failures: what is done, what failed and why, retry just those, start over.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { main } from '../../src/cli/cli-main.ts'
import { admin, cleanEnv, collector, freshDatabase, scratchDir, server } from '../helpers.ts'

const worker = new URL('../fixtures/workers/history.ts', import.meta.url).href
const definePipelineUrl = new URL('../../src/pipeline/pipeline.ts', import.meta.url).href

/** A pipeline module of `n` tasks where the keys in `failing` query a table that does not exist. */
function pipelineModule(dir: string, name: string, n: number, failing: number[]): string {
  const file = join(dir, `${name}.ts`)
  writeFileSync(
    file,
    `import { definePipeline } from ${JSON.stringify(definePipelineUrl)}
const failing = new Set(${JSON.stringify(failing)})
export default definePipeline({
  name: ${JSON.stringify(name)},
  worker: new URL(${JSON.stringify(worker)}),
  async setup(db) { await db.query('CREATE TABLE IF NOT EXISTS history_out (key int PRIMARY KEY)') },
  tasks: Array.from({ length: ${n} }, (_, i) => ({ key: i + 1, fail: failing.has(i + 1) })),
})
`,
  )
  return file
}

async function pgcrew(argv: string[], env: NodeJS.ProcessEnv, stdin?: NodeJS.ReadableStream) {
  const stdout = collector()
  const stderr = collector()
  const code = await main(argv, { stdout: stdout.stream, stderr: stderr.stream, env, isTTY: false, stdin })
  return { code, stdout: stdout.text(), stderr: stderr.text() }
}

async function project(prefix: string) {
  const { dbname } = await freshDatabase(prefix)
  const { host, port, user, password } = server()
  const env = { ...cleanEnv(), PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname }
  return { dbname, env, dir: scratchDir() }
}

/** Every number-like value of a --json document is a JSON number, never a numeric string (task keys are strings: a key is a name). */
function assertFiguresAreNumbers(value: unknown, path = '$'): void {
  if (path.endsWith('.key')) return
  if (typeof value === 'string') assert.doesNotMatch(value, /^-?\d+(\.\d+)?$/, `${path} is the string ${JSON.stringify(value)}, not a number`)
  else if (Array.isArray(value)) value.forEach((v, i) => assertFiguresAreNumbers(v, `${path}[${i}]`))
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) assertFiguresAreNumbers(v, `${path}.${k}`)
}

describe('pgcrew status, failures, retry, reset, runs', () => {
  test('after a run with failures: status and failures say what failed and why; retry --failed runs only those; reset starts over', async () => {
    const { env, dir, dbname } = await project('histcli')
    const mod = pipelineModule(dir, 'stars', 30, [10, 20, 30])
    const first = await pgcrew(['run', mod, '--threads', '2'], env)
    assert.equal(first.code, 1, first.stderr)
    assert.match(first.stdout, /^failed: 10 after 1 attempt\(s\): \[42P01\] relation "no_such_table" does not exist$/m)

    const status = await pgcrew(['status', mod, '--json'], env)
    assert.equal(status.code, 0, status.stderr)
    const s = JSON.parse(status.stdout)
    assertFiguresAreNumbers(s)
    assert.deepEqual(
      { done: s.done, failed: s.failed, total: s.total, remaining: s.remaining, running: s.running, eta: s.etaSeconds },
      { done: 27, failed: 3, total: 30, remaining: 3, running: [], eta: null },
    )
    assert.equal(s.runs.length, 1)
    assert.equal(s.runs[0].status, 'failed')
    assert.equal(s.runs[0].done, 27)

    const text = await pgcrew(['status', 'stars'], env)
    assert.match(text.stdout, /^done +27$/m)
    assert.match(text.stdout, /^failed +3 \(pgcrew failures stars; pgcrew retry stars --failed\)$/m)
    assert.match(text.stdout, /^remaining +unknown/m, 'by name alone the task source cannot be counted')
    assert.match(text.stdout, /^ID +STATUS +STARTED +DURATION +DONE +FAILED +TASKS\/S +HOST$/m)
    assert.match(text.stdout, /^\d+ +failed +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\S+ +27 +3 /m)

    const failures = await pgcrew(['failures', 'stars', '--json'], env)
    const f = JSON.parse(failures.stdout) as { failed: number; failures: Array<{ key: string; attempts: number; code: string; message: string; worker: number; host: string }> }
    assertFiguresAreNumbers(f)
    assert.equal(f.failed, 3)
    assert.deepEqual(f.failures.map((r) => r.key).sort(), ['10', '20', '30'])
    for (const r of f.failures) {
      assert.equal(r.attempts, 1)
      assert.equal(r.code, '42P01')
      assert.equal(r.message, 'relation "no_such_table" does not exist')
      assert.ok(r.worker === 1 || r.worker === 2, `worker ${r.worker}`)
      assert.equal(typeof r.host, 'string')
    }
    const limited = await pgcrew(['failures', 'stars', '--limit', '2'], env)
    assert.match(limited.stdout, /^KEY +ATTEMPTS +CODE +WORKER +HOST +WHEN +MESSAGE$/m)
    assert.match(limited.stdout, /^… and 1 more failures \(--limit 0 lists them all\)$/m)

    // The user fixes the cause (here: creates the missing table) and retries just the failures.
    await admin('CREATE TABLE no_such_table (x int)', [], dbname)
    const retry = await pgcrew(['retry', mod, '--failed', '--threads', '2', '--json'], env)
    assert.equal(retry.code, 0, retry.stderr)
    const r = JSON.parse(retry.stdout)
    // The run summary too: the budget is a number (its sentence is budgetExplanation).
    assertFiguresAreNumbers(r)
    assert.equal(typeof r.budget, 'number')
    assert.deepEqual({ failedBefore: r.failedBefore, seen: r.seen, done: r.done, failed: r.failed }, { failedBefore: 3, seen: 3, done: 3, failed: 0 })
    // Attempts add up across runs: one failed attempt, then one that succeeded.
    const attempts = await admin<{ key: string; attempts: number }>("SELECT key, attempts FROM pgcrew_ledger WHERE key IN ('10', '20', '30') ORDER BY key", [], dbname)
    assert.deepEqual(attempts, [
      { key: '10', attempts: 2 },
      { key: '20', attempts: 2 },
      { key: '30', attempts: 2 },
    ])
    const after = JSON.parse((await pgcrew(['status', mod, '--json'], env)).stdout)
    assert.deepEqual([after.done, after.failed, after.remaining], [30, 0, 0])

    const runs = JSON.parse((await pgcrew(['runs', 'stars', '--json'], env)).stdout) as Array<{ id: number; status: string; done: number }>
    assertFiguresAreNumbers(runs)
    assert.deepEqual(
      runs.map((x) => [x.status, x.done]),
      [
        ['completed', 3],
        ['failed', 27],
      ],
    )
    const shown = await pgcrew(['runs', 'show', String(runs[1].id)], env)
    assert.equal(shown.code, 0, shown.stderr)
    assert.match(shown.stdout, /^status +failed$/m)
    assert.match(shown.stdout, /^tasks +30 seen, 27 done, 0 skipped, 3 failed, 0 retried$/m)
    const missing = await pgcrew(['runs', 'show', '999999', '--json'], env)
    assert.equal(missing.code, 1)
    assert.equal(JSON.parse(missing.stdout).error.code, 'RUN_NOT_FOUND')

    // reset asks first; with no terminal to ask on it needs --yes and changes nothing without it.
    const refused = await pgcrew(['reset', 'stars'], env)
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /reset would forget 30 ledger rows of pipeline stars \(30 done, 0 failed\) in pgcrew_ledger; nothing was changed\. Run again with --yes/)
    assert.equal((await admin<{ n: number }>('SELECT count(*)::int AS n FROM pgcrew_ledger', [], dbname))[0]!.n, 30)
    const reset = await pgcrew(['reset', 'stars', '--yes', '--json'], env)
    assert.deepEqual(JSON.parse(reset.stdout), { pipeline: 'stars', ledger: 'pgcrew_ledger', forgotten: 30 })
    assert.equal((await admin<{ n: number }>('SELECT count(*)::int AS n FROM pgcrew_ledger', [], dbname))[0]!.n, 0)
    // The pipeline's own table is the user's: reset never touches it.
    assert.equal((await admin<{ n: number }>('SELECT count(*)::int AS n FROM history_out', [], dbname))[0]!.n, 30)
  })

  test('reset on a terminal asks, and does it on "y"', async () => {
    const { env, dir } = await project('histreset')
    const mod = pipelineModule(dir, 'asked', 4, [])
    assert.equal((await pgcrew(['run', mod, '--threads', '1'], env)).code, 0)
    const { Readable } = await import('node:stream')
    const stdin = Object.assign(Readable.from(['y\n']), { isTTY: true })
    const r = await pgcrew(['reset', 'asked'], env, stdin)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /^forget 4 ledger rows of pipeline asked \(4 done, 0 failed\) in pgcrew_ledger\? .*\[y\/N\] /)
    assert.match(r.stdout, /^forgot 4 ledger rows of pipeline asked/)
  })

  test('retry --failed --mark-only runs nothing and makes the failed keys runnable; the summary lists 20 failures and says how many more', async () => {
    const { env, dir, dbname } = await project('histmark')
    const mod = pipelineModule(
      dir,
      'many',
      30,
      Array.from({ length: 25 }, (_, i) => i + 1),
    )
    const run = await pgcrew(['run', mod, '--threads', '2'], env)
    assert.equal(run.code, 1)
    assert.equal(run.stdout.match(/^failed: /gm)?.length, 20)
    assert.match(run.stdout, /^… and 5 more failures \(pgcrew failures many lists them all\)$/m)
    const marked = await pgcrew(['retry', 'many', '--failed', '--mark-only', '--json'], env)
    assert.equal(marked.code, 0, marked.stderr)
    assert.deepEqual(JSON.parse(marked.stdout), { pipeline: 'many', ledger: 'pgcrew_ledger', marked: 25 })
    assert.deepEqual(await admin('SELECT status, count(*)::int AS n FROM pgcrew_ledger GROUP BY status', [], dbname), [{ status: 'done', n: 5 }])
    const byName = await pgcrew(['retry', 'many', '--failed'], env)
    assert.equal(byName.code, 2)
    assert.match(byName.stderr, /retry --failed runs the pipeline: give its module, not the name "many"/)
  })

  test('run --max-failures stops a run that keeps failing; the text summary and runs show say why', async () => {
    const { env, dir } = await project('histmax')
    const mod = pipelineModule(
      dir,
      'broken',
      3000,
      Array.from({ length: 3000 }, (_, i) => i + 1),
    )
    const run = await pgcrew(['run', mod, '--threads', '2', '--max-failures', '4'], env)
    assert.equal(run.code, 1)
    assert.match(run.stdout, /^stopped +stopped early: 4 tasks failed, the most allowed \(maxFailures 4\); the last: \[42P01\]/m)
    const runs = JSON.parse((await pgcrew(['runs', '--json'], env)).stdout)
    assert.equal(runs[0].status, 'failed')
    assert.match(runs[0].reason, /^stopped early: 4 tasks failed/)
    const bad = await pgcrew(['run', mod, '--max-failures', '0'], env)
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /--max-failures takes a whole number from 1 to 1000000000, not "0"/)
  })
})
