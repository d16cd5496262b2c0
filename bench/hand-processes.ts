// The hand loop run in K processes at once, each with its own pg.Pool and loops over its share of the
// tasks: what a user gets from more cores by hand, without pgcrew (a child per core, started and
// warmed before the clock starts). node .tmp/bench-build/bench/hand-processes.js is the child.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { handLoop } from './pipeline-sides.ts'

interface ChildArgs {
  url: string
  name: string
  count: number
  seed: number
  rounds: number
  loops: number
}

type FromChild = { ready: true } | { seconds: number; cpu: number }

if (process.send && process.env.PGCREW_BENCH_HAND_CHILD) {
  const args = JSON.parse(process.env.PGCREW_BENCH_HAND_CHILD) as ChildArgs
  const pool = new pg.Pool({ connectionString: args.url, max: args.loops })
  pool.on('error', () => {})
  // Warm: connections, JIT, plans (a name of its own, so its ledger rows are not the measured ones').
  await handLoop(pool, `${args.name}-warm`, 200, args.seed + 1000, args.rounds, args.loops)
  process.send({ ready: true } satisfies FromChild)
  await new Promise<void>((resolve) => process.once('message', () => resolve()))
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await handLoop(pool, args.name, args.count, args.seed, args.rounds, args.loops)
  const seconds = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  process.send({ seconds, cpu: (c.user + c.system) / 1e6 } satisfies FromChild)
  await pool.end()
  process.disconnect()
}

/**
 * `processes` hand loops of `loops` connections each, over count/processes tasks each, started together
 * once all are warm. Returns tasks per second over the slowest, and the children's CPU seconds
 * (their own process.cpuUsage over the measured window).
 */
export async function handProcesses(url: string, name: string, count: number, seed: number, rounds: number, processes = 2, loops = 2, mark?: () => void): Promise<{ rate: number; cpu: number }> {
  const share = Math.ceil(count / processes)
  const children = Array.from({ length: processes }, (_, i) => {
    const args: ChildArgs = { url, name: `${name}-p${i}`, count: share, seed: seed * 10 + i, rounds, loops }
    return fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, PGCREW_BENCH_HAND_CHILD: JSON.stringify(args) }, stdio: 'inherit' })
  })
  const next = (child: (typeof children)[number]): Promise<FromChild> =>
    new Promise((resolve, reject) => {
      child.once('message', (m) => resolve(m as FromChild))
      child.once('exit', (code) => reject(new Error(`hand-loop child exited with ${code}`)))
    })
  await Promise.all(children.map(next))
  const done = children.map(next)
  mark?.()
  const t0 = performance.now()
  for (const child of children) child.send('go')
  const results = (await Promise.all(done)) as { seconds: number; cpu: number }[]
  const seconds = (performance.now() - t0) / 1000
  return { rate: (share * processes) / seconds, cpu: results.reduce((a, r) => a + r.cpu, 0) }
}
