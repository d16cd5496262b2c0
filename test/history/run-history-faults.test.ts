// The run history through a server outage: the server of a running pipeline goes away for a few
// seconds; the run still does every task, and its history has samples from before and after the
// outage, the outage and the recovery as events at the times they happened, and the run completed.
// Bounded (the outage is 3 s, the run a few seconds more) and self-cleaning (its own cluster).
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { startTempCluster } from '../../src/cluster/temp-cluster.ts'
import { sleep } from '../../src/database/connection-retry.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { silentProgress, type ProgressReporter, type ProgressState } from '../../src/pipeline/pipeline-progress.ts'
import { getRun } from '../../src/history/run-list.ts'
import { cleanEnv, eventually } from '../helpers.ts'

const worker = new URL('../fixtures/workers/history.ts', import.meta.url)

function watching(onUpdate: (s: ProgressState) => void): ProgressReporter {
  return { start: (total) => silentProgress.start(total), stop: (s) => silentProgress.stop(s), update: (s) => (onUpdate(s), silentProgress.update(s)) }
}

describe('run history during a server outage', () => {
  test('a run whose server goes away for 3 s: every task done, samples before and after, the outage and the recovery as events, completed', { timeout: 180_000 }, async () => {
    await using cluster = await startTempCluster()
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    process.on('unhandledRejection', onRejection)
    try {
      const n = 150
      const def = definePipeline({
        name: 'outage',
        worker,
        setup: async (d) => void (await d.query('CREATE TABLE IF NOT EXISTS history_out (key int PRIMARY KEY)')),
        tasks: Array.from({ length: n }, (_, i) => ({ key: i + 1, sleepMillis: 40 })),
      })
      let outage: Promise<{ down: number; up: number }> | undefined
      const progress = watching((s) => {
        outage ??=
          s.done >= 30
            ? (async () => {
                const down = Date.now()
                await cluster.stopServer()
                await sleep(3000)
                await cluster.startServer()
                return { down, up: Date.now() }
              })()
            : undefined
      })
      const db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 3 })
      let summary
      try {
        summary = await runPipeline(db, def, { threads: 2, progress, history: { sampleMillis: 200 } })
      } finally {
        await db.close()
      }
      assert.ok(outage, 'the outage never started')
      const { down, up } = await outage
      assert.deepEqual([summary.done, summary.failed], [n, 0])
      assert.ok(summary.runId, summary.history)
      await using reader = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 1 })
      const run = (await getRun(reader, summary.runId))!
      assert.equal(run.status, 'completed', run.reason ?? '')
      const samples = await reader.query<{ at: Date; value: number }>("SELECT at, value FROM pgcrew.readings WHERE session_id = $1 AND series = 'run.done' ORDER BY at", [run.id])
      assert.ok(
        samples.rows.some((r) => r.at.getTime() < down),
        'no sample before the outage',
      )
      assert.ok(
        samples.rows.some((r) => r.at.getTime() > up),
        'no sample after the outage',
      )
      assert.equal(samples.rows.at(-1)!.value, n)
      const events = await reader.query<{ at: Date; kind: string }>("SELECT at, data->>'kind' AS kind FROM pgcrew.events WHERE session_id = $1 ORDER BY at, id", [run.id])
      const kinds = events.rows.map((e) => e.kind)
      assert.ok(kinds.includes('unreachable') && kinds.includes('reachable'), `events: ${kinds.join(', ')}`)
      // Each at the time it happened (not when it could be written): the outage began while the server was down.
      const unreachable = events.rows.find((e) => e.kind === 'unreachable')!
      const reachable = events.rows.find((e) => e.kind === 'reachable')!
      assert.ok(
        unreachable.at.getTime() >= down && unreachable.at.getTime() <= up,
        `unreachable at ${unreachable.at.toISOString()}, down ${new Date(down).toISOString()}–${new Date(up).toISOString()}`,
      )
      assert.ok(reachable.at.getTime() >= unreachable.at.getTime(), 'reachable before unreachable')
      // Give a rejection a moment to surface.
      await eventually(async () => rejections.length > 0, 500)
      assert.deepEqual(rejections, [])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })
})
