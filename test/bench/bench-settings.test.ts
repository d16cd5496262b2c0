// The bench's BENCH_* settings, as someone typing them sees them: a typo stops `npm run bench` at
// once, with the variable, its value and what to do, and no stack trace (bench/settings.ts).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, test } from 'node:test'

/** Run a bench script with tsx (as `tsc -p bench` would compile it), BENCHMARKS.md never written. */
function bench(args: string[], env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, BENCH_WRITE: '0', ...env }, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

const setting = (value: string): ReturnType<typeof bench> => bench(['-e', "import('./bench/settings.ts').then((m) => console.log(m.benchSetting('BENCH_X', 5)))"], { BENCH_X: value })

describe('bench settings', () => {
  test('a whole number is taken, with _ between digits; unset or empty gives the default', () => {
    assert.equal(setting('20_000').stdout.trim(), '20000')
    assert.equal(setting('7').stdout.trim(), '7')
    assert.equal(setting('').stdout.trim(), '5')
  })

  for (const [name, value] of [
    ['BENCH_STATEMENT_REPS', '0'],
    ['BENCH_TASKS', '12k'],
    ['BENCH_DISTRIBUTED_TASKS', '2.5'],
    ['BENCH_REPS', '-3'],
  ]) {
    test(`${name}=${value} stops npm run bench before it starts a server, and says what to do`, () => {
      const r = bench(['bench/run.ts'], { [name]: value, BENCH_ONLY: 'statements' })
      assert.equal(r.status, 2, r.stderr)
      assert.match(r.stderr, new RegExp(`^bench: ${name}="${value.replace('.', '\\.')}" is not a whole number ≥ 1; .*unset it for the default`))
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
      assert.equal(r.stdout, '', 'nothing measured')
    })
  }

  test('an unknown BENCH_ONLY section stops the bench and lists the sections there are', () => {
    const r = bench(['bench/run.ts'], { BENCH_ONLY: 'pipeline,statement' })
    assert.equal(r.status, 2, r.stderr)
    assert.match(r.stderr, /^bench: BENCH_ONLY="pipeline,statement": no section "statement"; choose from pipeline, heavy, distributed, statements, bulk, memory, store\n$/)
    assert.equal(r.stdout, '')
  })
})
