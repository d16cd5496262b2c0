// What the hand-written loop costs per task with fewer connections per event loop, without pgcrew:
// node .tmp/bench-build/bench/event-loops.js [REPS]
// Interleaved, each side in child processes (warmed on 200 tasks, then timed together), against the
// bench's durable server settings: one process of 4 connections; one process of 2 alone (the same
// task count per process as the pair's); two processes of 2 at once (pgcrew 2×2's shape, by hand).
// Prints the client CPU per task (user, sys) and each process's context switches per task: a loop
// of 2 connections waiting on durable commits sleeps in epoll_wait more often than a loop of 4,
// and each wake-up is paid for.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { Database } from '../src/database/database.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { ensureLedger } from '../src/pipeline/pipeline-ledger.ts'
import { handLoop } from './hand-loop.ts'
import { DURABLE_SETTINGS, LIGHT_ROUNDS, TABLES_SQL } from './workload.ts'

interface ChildArgs {
  url: string
  name: string
  count: number
  seed: number
  loops: number
}
interface ChildResult {
  user: number
  sys: number
  voluntary: number
  involuntary: number
}

if (process.send && process.env.PGCREW_BENCH_LOOPS_CHILD) {
  const args = JSON.parse(process.env.PGCREW_BENCH_LOOPS_CHILD) as ChildArgs
  const pool = new pg.Pool({ connectionString: args.url, max: args.loops })
  pool.on('error', () => {})
  await handLoop(pool, `${args.name}-warm`, 200, args.seed + 1000, LIGHT_ROUNDS, args.loops)
  process.send('ready')
  await new Promise<void>((resolve) => process.once('message', () => resolve()))
  const c0 = process.cpuUsage()
  const r0 = process.resourceUsage()
  await handLoop(pool, args.name, args.count, args.seed, LIGHT_ROUNDS, args.loops)
  const c = process.cpuUsage(c0)
  const r1 = process.resourceUsage()
  const per = (n: number): number => n / args.count
  process.send({
    user: per(c.user),
    sys: per(c.system),
    voluntary: per(r1.voluntaryContextSwitches - r0.voluntaryContextSwitches),
    involuntary: per(r1.involuntaryContextSwitches - r0.involuntaryContextSwitches),
  } satisfies ChildResult)
  await pool.end()
  process.disconnect()
} else {
  const reps = Number(process.argv[2] ?? 3)
  const cluster = await startTempCluster({ settings: DURABLE_SETTINGS })
  const db = new Database({ connectionString: cluster.url, max: 1 })
  let runs = 0
  const side = async (processes: number, loops: number, count: number): Promise<{ rate: number } & ChildResult> => {
    const children = Array.from({ length: processes }, () => {
      const args: ChildArgs = { url: cluster.url, name: `loops-${runs++}`, count, seed: runs * 7, loops }
      return fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, PGCREW_BENCH_LOOPS_CHILD: JSON.stringify(args) }, stdio: 'inherit' })
    })
    const next = (child: (typeof children)[number]): Promise<unknown> => new Promise((resolve) => child.once('message', resolve))
    await Promise.all(children.map(next))
    const done = children.map(next)
    const t0 = performance.now()
    for (const child of children) child.send('go')
    const results = (await Promise.all(done)) as ChildResult[]
    const seconds = (performance.now() - t0) / 1000
    await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined)))
    const mean = (key: keyof ChildResult): number => results.reduce((a, r) => a + r[key], 0) / results.length
    return { rate: (processes * count) / seconds, user: mean('user'), sys: mean('sys'), voluntary: mean('voluntary'), involuntary: mean('involuntary') }
  }
  try {
    for (const sql of TABLES_SQL) await db.query(sql)
    await ensureLedger(db, 'pgcrew_ledger')
    const sides: [string, number, number, number][] = [
      ['1 process × 4 connections', 1, 4, 6000],
      ['1 process × 2, alone', 1, 2, 3000],
      ['2 processes × 2, at once', 2, 2, 3000],
    ]
    console.log('| rep | side | tasks/s | client CPU µs/task (user + sys) | context switches per task per process (voluntary / involuntary) |')
    console.log('|---:|---|---:|---:|---:|')
    for (let rep = 0; rep < reps; rep++) {
      for (const [name, processes, loops, count] of rep % 2 ? [...sides].reverse() : sides) {
        await db.query('VACUUM')
        await db.query('CHECKPOINT')
        const r = await side(processes, loops, count)
        console.log(
          `| ${rep + 1} | ${name} | ${r.rate.toFixed(0)} | ${(r.user + r.sys).toFixed(0)} (${r.user.toFixed(0)} + ${r.sys.toFixed(0)}) | ${r.voluntary.toFixed(2)} / ${r.involuntary.toFixed(2)} |`,
        )
      }
    }
  } finally {
    await db.close()
    await cluster.stop()
  }
}
