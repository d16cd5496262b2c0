// What AsyncLocalStorage costs on Node 20: node .tmp/bench-build/bench/async-context.js
// (BENCH_PAIRS pairs, default 8, of BENCH_TASKS light tasks each, default 6000).
// pgcrew finds the transaction a db.query runs inside through AsyncLocalStorage (README: "Inside
// db.transaction(fn)"). On Node 20 a storage in use turns on V8's promise hooks for the whole thread:
// every promise, and every await, then calls into JavaScript. This runs the bench's hand-written loop
// (pg only, no pgcrew) in child processes, in pairs in turn, with and without one storage entered
// first, and prints the client CPU per task of each and their ratio.
import { spawnSync } from 'node:child_process'
import { Database } from '../src/database/database.ts'
import { ensureLedger } from '../src/pipeline/pipeline-ledger.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { DURABLE_SETTINGS, TABLES_SQL } from './workload.ts'
import { benchSetting } from './settings.ts'

// Settings as the rest of the bench takes them: BENCH_* variables, a typo refused before anything runs.
const pairs = benchSetting('BENCH_PAIRS', 8)
const count = benchSetting('BENCH_TASKS', 6000)
const handLoop = new URL('./hand-loop.js', import.meta.url).href

// One child: warm up on 500 tasks, then time `count` of them; prints tasks/s and client µs per task.
const child = `
import pg from 'pg'
import { AsyncLocalStorage } from 'node:async_hooks'
import { handLoop } from ${JSON.stringify(handLoop)}
if (process.argv[1] === 'storage') new AsyncLocalStorage().enterWith({})
const pool = new pg.Pool({ connectionString: process.argv[2], max: 4 })
pool.on('error', () => {})
await handLoop(pool, 'warm' + process.pid, 500, 1, 20)
const c0 = process.cpuUsage()
const rate = await handLoop(pool, 'run' + process.pid, ${count}, 2, 20)
const c = process.cpuUsage(c0)
console.log(JSON.stringify({ rate, cpu: (c.user + c.system) / ${count} }))
await pool.end()
`

const cluster = await startTempCluster({ settings: DURABLE_SETTINGS })
try {
  const db = new Database({ connectionString: cluster.url, max: 1 })
  for (const sql of TABLES_SQL) await db.query(sql)
  await ensureLedger(db, 'pgcrew_ledger')
  await db.close()
  const run = (mode: 'plain' | 'storage'): { rate: number; cpu: number } => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child, mode, cluster.url], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname })
    if (r.status !== 0) throw new Error(`the ${mode} child failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`)
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { rate: number; cpu: number }
  }
  const ratios: number[] = []
  for (let i = 0; i < pairs; i++) {
    // ABBA order across pairs: neither side always runs first.
    const [a, b] = i % 2 ? (['storage', 'plain'] as const) : (['plain', 'storage'] as const)
    const first = run(a)
    const second = run(b)
    const plain = a === 'plain' ? first : second
    const storage = a === 'plain' ? second : first
    ratios.push(storage.cpu / plain.cpu)
    console.log(
      `pair ${i + 1}: without ${plain.cpu.toFixed(0)} µs/task (${plain.rate.toFixed(0)}/s), with a storage ${storage.cpu.toFixed(0)} µs/task (${storage.rate.toFixed(0)}/s): ${(storage.cpu / plain.cpu).toFixed(2)}×`,
    )
  }
  const sorted = [...ratios].sort((x, y) => x - y)
  console.log(
    `hand loop's client CPU per task with an AsyncLocalStorage in use: ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}× without (median of ${pairs} pairs, ${sorted[0]!.toFixed(2)}–${sorted.at(-1)!.toFixed(2)}; ${count} tasks each, node ${process.version})`,
  )
} finally {
  await cluster.stop()
}
