// The one task-retry loop of a local run and a distributed one (src/pipeline/task-attempts.ts), driven
// by scripted crew outcomes (what a worker thread reports) against a real ledger on the test server.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { TaskEnvelope, TaskOutcome } from '../../src/crew/crew-protocol.ts'
import { Database } from '../../src/database/database.ts'
import { withConnectionRetry } from '../../src/database/connection-retry.ts'
import { ensureLedger } from '../../src/pipeline/pipeline-ledger.ts'
import { attemptTask, taskAttempts, type TaskAttempts, type TaskFailure } from '../../src/pipeline/task-attempts.ts'
import type { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

let db: Database
before(async () => {
  const { url } = await freshDatabase('attempts')
  db = new Database({ connectionString: url, env: cleanEnv() })
  await ensureLedger(db, 'pgcrew_ledger')
})
after(() => db.close())

const ok = (workerId = 1, skipped = false): TaskOutcome => ({ ok: true, value: undefined, skipped, workerId })
const fail = (error: { code?: string; message: string; transient?: boolean; connectionLost?: boolean }, workerId = 1): TaskOutcome => ({
  ok: false,
  error: { name: 'TaskError', transient: false, ...error },
  workerId,
})
const DEADLOCK = { code: '40P01', message: 'deadlock detected', transient: true }
const LOST = { code: '57P01', message: 'terminating connection due to administrator command', transient: true, connectionLost: true }

/** A run's shared state whose crew answers from a script (one outcome per attempt, the last repeated). */
function run(name: string, script: TaskOutcome[], extra: Partial<TaskAttempts> = {}) {
  const sent: TaskEnvelope[] = []
  const failed: Array<TaskFailure & { workerId: number }> = []
  const fatal: PgcrewError[] = []
  const a = taskAttempts({
    pipeline: name,
    ledger: 'pgcrew_ledger',
    policy: { retries: 2, windowMillis: 5000, firstDelayMillis: 1 },
    counts: { done: 0, skipped: 0, failed: 0, retried: 0 },
    perWorker: {},
    failures: [],
    db,
    host: 'attempts.test.local',
    dispatch: async (envelope) => {
      sent.push(envelope)
      return script[Math.min(sent.length - 1, script.length - 1)]!
    },
    patiently: (fn) => withConnectionRetry(fn, { windowMillis: 5000 }),
    onChange: () => {},
    onFailed: (failure, workerId) => failed.push({ ...failure, workerId }),
    onFatal: (error) => fatal.push(error),
    ...extra,
  })
  return { a, sent, failed, fatal }
}

describe('attemptTask', () => {
  test('a deadlock is retried `retries` times, then the task fails for good and its failure row is in the ledger', async () => {
    const { a, sent, failed } = run('deadlocks', [fail(DEADLOCK, 3)])
    assert.equal(await attemptTask(a, { key: 7 }, '7'), false)
    assert.deepEqual(
      sent.map((e) => e.attempt),
      [1, 2, 3],
    )
    assert.deepEqual(a.counts, { done: 0, skipped: 0, failed: 1, retried: 2 })
    assert.deepEqual(failed, [{ key: '7', attempts: 3, code: '40P01', message: 'deadlock detected', workerId: 3 }])
    assert.deepEqual(a.failures, [{ key: '7', attempts: 3, code: '40P01', message: 'deadlock detected' }])
    const { rows } = await db.query("SELECT key, status, attempts, worker, host, error_code FROM pgcrew_ledger WHERE pipeline = 'deadlocks'")
    assert.deepEqual(rows, [{ key: '7', status: 'failed', attempts: 3, worker: 3, host: 'attempts.test.local', error_code: '40P01' }])
  })

  test('a lost connection is retried for the window, not `retries` times: five losses, then done', async () => {
    const { a, sent } = run('outage', [fail(LOST), fail(LOST), fail(LOST), fail(LOST), fail(LOST), ok(2)])
    assert.equal(await attemptTask(a, { key: 1 }, '1'), false)
    assert.equal(sent.length, 6)
    assert.deepEqual(a.counts, { done: 1, skipped: 0, failed: 0, retried: 5 })
    assert.deepEqual(a.perWorker, { 2: 1 })
  })

  test('the outcome of a first attempt sent in a batch is used as attempt 1; a retried task that finds its key done after a crash counts as done', async () => {
    const { a, sent } = run('batched', [ok(1, true)])
    assert.equal(await attemptTask(a, { key: 1 }, '1', fail({ code: 'WORKER_CRASHED', message: 'the worker thread died', transient: true })), false)
    assert.deepEqual(
      sent.map((e) => e.attempt),
      [2],
    )
    assert.deepEqual(a.counts, { done: 1, skipped: 0, failed: 0, retried: 1 })
    const plain = run('batched-skip', [])
    assert.equal(await attemptTask(plain.a, { key: 1 }, '1', ok(1, true)), false)
    assert.deepEqual([plain.sent.length, plain.a.counts.skipped], [0, 1])
  })

  test('a worker that cannot start is fatal: the task is left undone (true) and the error keeps its code', async () => {
    const { a, fatal } = run('fatal', [fail({ code: 'WORKER_INIT_FAILED', message: 'worker init threw' })])
    assert.equal(await attemptTask(a, { key: 1 }, '1'), true)
    assert.deepEqual(
      fatal.map((e) => [e.code, e.message]),
      [['WORKER_INIT_FAILED', 'worker init threw']],
    )
    assert.deepEqual(a.counts, { done: 0, skipped: 0, failed: 0, retried: 0 })
  })

  test('Ctrl-C during an outage: the waiting tasks end at once, left undone, none failed, and no listener warning for the many of them', async () => {
    const controller = new AbortController()
    const warnings: string[] = []
    const onWarning = (w: Error): void => void warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      const { a } = run('stopping', [fail(LOST)], { signal: controller.signal, policy: { retries: 2, windowMillis: 60_000, firstDelayMillis: 30_000 } })
      const started = Date.now()
      const tasks = Array.from({ length: 30 }, (_, i) => attemptTask(a, { key: i }, String(i)))
      await new Promise((r) => setTimeout(r, 100))
      controller.abort()
      assert.deepEqual(new Set(await Promise.all(tasks)), new Set([true]))
      assert.ok(Date.now() - started < 10_000, 'the waits did not end with the abort')
      assert.deepEqual(a.counts, { done: 0, skipped: 0, failed: 0, retried: 30 })
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(
        warnings.filter((w) => w === 'MaxListenersExceededWarning'),
        [],
      )
    } finally {
      process.off('warning', onWarning)
    }
  })
})
