// Several tasks per message to a worker (RunOptions.tasksPerMessage): each task is still its own
// transaction and ledger row, so a failing task or a dying thread leaves every other task done once.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { runPipeline } from '../../src/pipeline/pipeline.ts'
import { batchPipeline, counts } from '../fixtures/pipelines/batch.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1)

async function ledger(db: Database, pipeline: string): Promise<Record<string, string>> {
  const { rows } = await db.query<{ key: string; status: string }>('SELECT key, status FROM pgcrew_ledger WHERE pipeline = $1', [pipeline])
  return Object.fromEntries(rows.map((r) => [r.key, r.status]))
}

describe('several tasks per message', () => {
  test('a task failing inside a message rolls back alone: the others of its message commit, each once', async () => {
    const { url } = await freshDatabase('batchfail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const tasks = range(12).map((key) => (key === 3 || key === 10 ? { key, fail: true } : { key }))
    const summary = await runPipeline(db, batchPipeline('batchfail', tasks), { threads: 1, perWorkerConnections: 2, tasksPerMessage: 6 })
    assert.deepEqual([summary.seen, summary.done, summary.failed, summary.skipped], [12, 10, 2, 0])
    assert.deepEqual(summary.failures.map((f) => f.key).sort(), ['10', '3'])
    assert.deepEqual(await counts(db), Object.fromEntries(range(12).map((k) => [k, k === 3 || k === 10 ? 0 : 1])))
    const rows = await ledger(db, 'batchfail')
    assert.deepEqual([rows['3'], rows['10'], Object.values(rows).filter((s) => s === 'done').length], ['failed', 'failed', 10])
    // A rerun does the failed two again and nothing else.
    const again = await runPipeline(
      db,
      batchPipeline(
        'batchfail',
        range(12).map((key) => ({ key })),
      ),
      { threads: 1, perWorkerConnections: 2, tasksPerMessage: 6 },
    )
    assert.deepEqual([again.done, again.skipped, again.failed], [2, 10, 0])
    assert.ok(Object.values(await counts(db)).every((n) => n === 1))
  })

  test('a thread dying mid-message: its committed tasks are not run again, the rest are retried, and all count as done', async () => {
    const { url } = await freshDatabase('batchcrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // One message of 8: key 8 kills the thread 500 ms in, when keys 1-7 have long committed.
    const tasks = range(8).map((key) => (key === 8 ? { key, crashAfterMillis: 500 } : { key }))
    const summary = await runPipeline(db, batchPipeline('batchcrash', tasks), { threads: 1, perWorkerConnections: 2, tasksPerMessage: 8, retryDelayMillis: 5 })
    assert.deepEqual([summary.seen, summary.done, summary.failed, summary.skipped], [8, 8, 0, 0])
    assert.ok(summary.retried >= 1, 'nothing was retried: the thread did not die mid-message')
    assert.deepEqual(await counts(db), Object.fromEntries(range(8).map((k) => [k, 1])))
    assert.equal(Object.values(await ledger(db, 'batchcrash')).filter((s) => s === 'done').length, 8)
  })

  test('by default slow tasks go one per connection, so every thread gets some (not one message of all of them on one thread)', async () => {
    const { url } = await freshDatabase('batchslow')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    // Before messages were sized by the tasks' time, 4 per connection went together: all four on one thread, 2 s.
    const tasks = range(4).map((key) => ({ key, sleepMillis: 500 }))
    const summary = await runPipeline(db, batchPipeline('batchslow', tasks), { threads: 2, perWorkerConnections: 1 })
    assert.equal(summary.done, 4)
    const workers = Object.values(summary.perWorker)
    assert.equal(workers.length, 2, `one thread ran all the tasks: ${JSON.stringify(summary.perWorker)}`)
    assert.deepEqual(await counts(db), Object.fromEntries(range(4).map((k) => [k, 1])))
  })

  test('tasksPerMessage must be a whole number ≥ 1, refused before anything runs', async () => {
    const { url } = await freshDatabase('batchopt')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await assert.rejects(runPipeline(db, batchPipeline('batchopt', [{ key: 1 }]), { tasksPerMessage: 0 }), { code: 'INVALID_OPTION', message: /tasksPerMessage must be a whole number from 1/ })
    assert.deepEqual((await db.query("SELECT to_regclass('counters') AS t")).rows, [{ t: null }])
  })
})
