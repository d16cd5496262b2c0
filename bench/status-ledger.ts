// How long `pgcrew status` takes on a big ledger: BENCH_LEDGER_ROWS keys (default 10 million, made
// with generate_series, 1 in 10,000 failed) in one pipeline beside a second pipeline of the same
// size, on a throwaway PostgreSQL. Prints the first status (it counts every done row once, through
// the partial index of done rows, and seals the count), the median of BENCH_REPS timings of
// pipelineStatus after it (the ledger counts and the last runs) and of the 20 newest failures, and
// a status after BENCH_NEW_ROWS (default 100,000) more done rows arrived since the last one.
// Run: node --import tsx bench/status-ledger.ts
import { Database } from '../src/database/database.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { ensureLedger } from '../src/pipeline/pipeline-ledger.ts'
import { ledgerCounts, ledgerFailures } from '../src/history/ledger-queries.ts'
import { pipelineStatus } from '../src/history/pipeline-status.ts'
import { benchSetting } from './settings.ts'

const ROWS = benchSetting('BENCH_LEDGER_ROWS', 10_000_000)
const REPS = benchSetting('BENCH_REPS', 7)
const NEW_ROWS = benchSetting('BENCH_NEW_ROWS', 100_000)

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - t) / 1e6
}

const cluster = await startTempCluster()
try {
  await using db = new Database({ connectionString: cluster.url, env: { PATH: process.env.PATH }, max: 2 })
  await db.connect()
  await ensureLedger(db, 'pgcrew_ledger')
  let t = Date.now()
  for (const [pipeline, n] of [
    ['big', ROWS],
    ['other', Math.round(ROWS / 10)],
  ] as const) {
    await db.query(
      `INSERT INTO pgcrew_ledger (pipeline, key, status, attempts, worker, host, error_code, error, finished_at)
       SELECT $1, g::text, CASE WHEN g % 10000 = 0 THEN 'failed' ELSE 'done' END, 1, g % 8 + 1, 'bench',
              CASE WHEN g % 10000 = 0 THEN '42P01' END, CASE WHEN g % 10000 = 0 THEN 'relation "x" does not exist' END,
              -- Finished a while ago, as a real ledger's rows did (a status seals 10 s back).
              now() - interval '1 hour'
         FROM generate_series(1, $2::int) g`,
      [pipeline, n],
    )
  }
  // What autovacuum does to a table that stopped changing: the visibility map lets the count read the index alone.
  await db.query('VACUUM ANALYZE pgcrew_ledger')
  console.log(`ledger: ${ROWS.toLocaleString('en')} rows of the pipeline and ${(ROWS / 10).toLocaleString('en')} of another, loaded and vacuumed in ${((Date.now() - t) / 1000).toFixed(0)} s`)
  t = Date.now()
  const status = await pipelineStatus(db, { pipeline: 'big', ledger: 'pgcrew_ledger' })
  console.log(`first status (counts every done row once, then seals the count; cold cache): ${Date.now() - t} ms → done ${status.done}, failed ${status.failed}`)
  const statusMs: number[] = []
  const failuresMs: number[] = []
  for (let i = 0; i < REPS; i++) {
    statusMs.push(await timed(() => pipelineStatus(db, { pipeline: 'big', ledger: 'pgcrew_ledger' })))
    failuresMs.push(await timed(() => ledgerFailures(db, 'pgcrew_ledger', 'big', 20)))
  }
  console.log(`pgcrew status (ledger counts + last runs): median ${median(statusMs).toFixed(0)} ms of ${REPS} (min ${Math.min(...statusMs).toFixed(0)}, max ${Math.max(...statusMs).toFixed(0)})`)
  console.log(`pgcrew failures --limit 20: median ${median(failuresMs).toFixed(1)} ms`)
  await db.query(`INSERT INTO pgcrew_ledger (pipeline, key, status, attempts, worker, host) SELECT 'big', 'new' || g, 'done', 1, 1, 'bench' FROM generate_series(1, $1::int) g`, [NEW_ROWS])
  let after!: Awaited<ReturnType<typeof pipelineStatus>>
  const newMs = await timed(async () => (after = await pipelineStatus(db, { pipeline: 'big', ledger: 'pgcrew_ledger' })))
  console.log(`status after ${NEW_ROWS.toLocaleString('en')} more done rows (not yet vacuumed): ${newMs.toFixed(0)} ms → done ${after.done}`)
  const full: number[] = []
  for (let i = 0; i < Math.min(REPS, 3); i++) full.push(await timed(() => ledgerCounts(db, 'pgcrew_ledger', 'big', { recount: true })))
  console.log(`a recount (every done row again, through the index of done rows): median ${median(full).toFixed(0)} ms`)
  const plan = await db.query<{ 'QUERY PLAN': string }>(
    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT (SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big'), (SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big' AND status = 'failed')",
  )
  console.log(plan.rows.map((r) => '  ' + r['QUERY PLAN']).join('\n'))
  const seq: number[] = []
  for (let i = 0; i < REPS; i++) seq.push(await timed(() => db.query("SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big'")))
  const viaIndex: number[] = []
  for (let i = 0; i < REPS; i++)
    viaIndex.push(
      await timed(() =>
        db.transaction(async (tx) => {
          await tx.query('SET LOCAL enable_seqscan = off')
          await tx.query("SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big'")
        }),
      ),
    )
  console.log(`count(*) of the pipeline, planner's choice: median ${median(seq).toFixed(0)} ms; through the primary key (index only): median ${median(viaIndex).toFixed(0)} ms`)
  const plan2 = await db.query<{ 'QUERY PLAN': string }>(
    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT (SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big'), (SELECT count(*) FROM pgcrew_ledger WHERE pipeline = 'big' AND status = 'failed')",
  )
  console.log(plan2.rows.map((r) => '  ' + r['QUERY PLAN']).join('\n'))
} finally {
  await cluster.stop()
}
