// The connection budget: what the server can still give, seen by the role that runs the pipeline.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import { runPipeline } from '../../src/pipeline/pipeline.ts'
import { startTempCluster, type TempCluster } from '../../src/cluster/temp-cluster.ts'
import { cleanEnv } from '../helpers.ts'
import counterPipeline from '../fixtures/pipelines/counter.ts'

/** The cluster's URL for another role and database. */
function urlAs(cluster: TempCluster, role: string, password: string, dbname: string): string {
  const u = new URL(cluster.url)
  u.username = role
  u.password = password
  u.pathname = `/${dbname}`
  return u.toString()
}

describe('connection budget', () => {
  test("regression: sessions of another role count against a non-superuser's budget (they are hidden from it in pg_stat_activity)", async () => {
    // 20 slots − 3 for superusers = 17 for ordinary roles; another role holds 11 of them, leaving 6.
    await using cluster = await startTempCluster({ settings: { max_connections: 20, superuser_reserved_connections: 3 } })
    const su = new pg.Client({ connectionString: cluster.url })
    await su.connect()
    await su.query("CREATE ROLE runner LOGIN PASSWORD 'runner-pw'; CREATE ROLE other LOGIN PASSWORD 'other-pw'")
    await su.query('CREATE DATABASE work OWNER runner')
    await su.end()
    const held: pg.Client[] = []
    try {
      for (let i = 0; i < 11; i++) {
        const c = new pg.Client({ connectionString: urlAs(cluster, 'other', 'other-pw', 'postgres') })
        c.on('error', () => {})
        await c.connect()
        held.push(c)
      }
      await using db = new Database({ connectionString: urlAs(cluster, 'runner', 'runner-pw', 'work'), env: cleanEnv(), max: 2 })
      const summary = await runPipeline(db, counterPipeline, { threads: 8, retries: 0 })
      // Before the fix the plan saw 0 other sessions and asked for 2 + 8 × 1 = 10; workers got 53300.
      assert.match(
        summary.budgetExplanation,
        /− held by other sessions (\d+); wanted 2 \(main\) \+ 1 \(run history\) \+ 8 threads × 1 = 11 — clamped to 2 \(main\) \+ 1 \(run history\) \+ \d threads × 1 = \d$/,
      )
      assert.ok(Number(/held by other sessions (\d+)/.exec(summary.budgetExplanation)![1]) >= 11, summary.budgetExplanation)
      assert.equal(summary.budgetPlan.clamped, true)
      assert.equal(summary.budgetPlan.main, 2)
      assert.ok(summary.budgetPlan.total <= 6, summary.budgetExplanation)
      assert.equal(summary.budgetPlan.total, summary.budgetPlan.main + summary.budgetPlan.beside + summary.budgetPlan.threads * summary.budgetPlan.perWorker)
      assert.deepEqual({ failed: summary.failed, done: summary.done, failures: summary.failures }, { failed: 0, done: 200, failures: [] })
      const counts = await db.query<{ n: number; c: number }>('SELECT n, count(*)::int AS c FROM counters GROUP BY n')
      assert.deepEqual(counts.rows, [{ n: 1, c: 200 }])
    } finally {
      await Promise.all(held.map((c) => c.end()))
    }
  })
})
