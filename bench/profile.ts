// One side of the pipeline bench on its own, for profiling: node --cpu-prof --cpu-prof-dir=DIR .tmp/bench-build/bench/profile.js SIDE
// SIDE: hand | crew22 | crew14. Worker threads inherit --cpu-prof and write a profile each; so does the hand loop's own process.
import pg from 'pg'
import { Database } from '../src/database/database.ts'
import { ensureLedger } from '../src/pipeline/pipeline-ledger.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { viaPipeline } from './pipeline-sides.ts'
import { handProcesses } from './hand-processes.ts'
import { DURABLE_SETTINGS, LIGHT_ROUNDS, TABLES_SQL } from './workload.ts'
import { sampleThreads } from './threads.ts'
import { benchSetting } from './settings.ts'

const side = process.argv[2] ?? 'crew22'
const count = benchSetting('BENCH_TASKS', 5000)
const rounds = benchSetting('BENCH_ROUNDS', LIGHT_ROUNDS)
const cluster = await startTempCluster({ settings: DURABLE_SETTINGS })
const pool = new pg.Pool({ connectionString: cluster.url, max: 4 })
// pool.end() resolves before its clients' sockets have closed, and the server's shutdown right after
// would reach one of them as an 'error' with no listener: the hand side died with a stack trace.
pool.on('error', () => {})
const db = new Database({ connectionString: cluster.url, max: 1 })
try {
  for (const sql of TABLES_SQL) await pool.query(sql)
  await ensureLedger(db, 'pgcrew_ledger')
  // CLOCK_MONOTONIC seconds, for `perf record -k CLOCK_MONOTONIC` … `perf report --time START,END`.
  const mono = (): string => (Number(process.hrtime.bigint()) / 1e9).toFixed(6)
  const monoStart = mono()
  const cpu0 = process.cpuUsage()
  const threads = sampleThreads()
  const t = performance.now()
  // The hand loop in a process of its own (warmed, and --cpu-prof passes to it): in this one the ledger's
  // creation ran a pgcrew transaction, and on Node 20 its AsyncLocalStorage would slow the loop's promises.
  const hand = side === 'hand' ? await handProcesses(cluster.url, 'p', count, 1, rounds, 1, 4) : undefined
  const rate = hand
    ? hand.rate
    : await viaPipeline(
        db,
        'p',
        count,
        1,
        rounds,
        side === 'crew14' ? { threads: 1, perWorkerConnections: 4 } : { threads: 2, perWorkerConnections: 2, tasksPerMessage: process.env.BENCH_TPM ? benchSetting('BENCH_TPM', 1) : undefined },
      )
  const cpu = process.cpuUsage(cpu0)
  const monoEnd = mono()
  const perThread = [...threads()].filter(([, s]) => s > 0).sort((a, b) => b[1] - a[1])
  console.log(
    hand
      ? `${side}: ${Math.round(rate)} tasks/s, client CPU ${((hand.cpu * 1e6) / count).toFixed(0)} µs/task (its own process), ${((performance.now() - t) / 1000).toFixed(1)} s`
      : `${side}: ${Math.round(rate)} tasks/s, client CPU ${((cpu.user + cpu.system) / count).toFixed(0)} µs/task (user ${(cpu.user / count).toFixed(0)}, sys ${(cpu.system / count).toFixed(0)}), ${((performance.now() - t) / 1000).toFixed(1)} s`,
  )
  console.log(`  run window (CLOCK_MONOTONIC): ${monoStart},${monoEnd}`)
  console.log(`  by thread (µs/task): ${perThread.map(([name, s]) => `${name} ${((s * 1e6) / count).toFixed(0)}`).join(', ')}`)
} finally {
  await db.close()
  await pool.end()
  await cluster.stop()
}
