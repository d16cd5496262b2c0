// The hand loop run in K processes at once, each with its own pg.Pool and loops over its share of the
// tasks: what a user gets from more cores by hand, without pgcrew. Warmed (started, connected and run
// on 200 tasks before the clock starts) or cold (timed from the fork). This file is also the child;
// it imports pg and the hand loop only, as a user's own script would.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { handLoop } from './hand-loop.ts'

interface ChildArgs {
  url: string
  name: string
  count: number
  seed: number
  rounds: number
  loops: number
  warm: boolean
}

// The parent times the side itself (both children, from 'go' or from the fork): a child sends its CPU only.
type FromChild = { ready: true } | { cpu: number }

if (process.send && process.env.PGCREW_BENCH_HAND_CHILD) {
  const args = JSON.parse(process.env.PGCREW_BENCH_HAND_CHILD) as ChildArgs
  const pool = new pg.Pool({ connectionString: args.url, max: args.loops })
  pool.on('error', () => {})
  // Warm: connections, JIT, plans (a name of its own, so its ledger rows are not the measured ones').
  if (args.warm) {
    await handLoop(pool, `${args.name}-warm`, 200, args.seed + 1000, args.rounds, args.loops)
    process.send({ ready: true } satisfies FromChild)
    await new Promise<void>((resolve) => process.once('message', () => resolve()))
  }
  // Cold: the process's whole CPU, its start, imports and connections included, as a thread's start is for pgcrew.
  const c0 = args.warm ? process.cpuUsage() : undefined
  await handLoop(pool, args.name, args.count, args.seed, args.rounds, args.loops)
  const c = process.cpuUsage(c0)
  process.send({ cpu: (c.user + c.system) / 1e6 } satisfies FromChild)
  await pool.end()
  process.disconnect()
}

/**
 * `processes` hand loops of `loops` connections each, over count/processes tasks each: started together
 * once all are warm, or (`warm` false) timed from the fork. Returns tasks per second over the slowest,
 * and the children's CPU seconds (their own process.cpuUsage over the timed window; cold: their whole).
 */
export async function handProcesses(
  url: string,
  name: string,
  count: number,
  seed: number,
  rounds: number,
  processes = 2,
  loops = 2,
  mark?: () => void,
  warm = true,
): Promise<{ rate: number; cpu: number }> {
  const share = Math.ceil(count / processes)
  if (!warm) mark?.()
  const t00 = performance.now()
  const children = Array.from({ length: processes }, (_, i) => {
    const args: ChildArgs = { url, name: `${name}-p${i}`, count: share, seed: seed * 10 + i, rounds, loops, warm }
    return fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, PGCREW_BENCH_HAND_CHILD: JSON.stringify(args) }, stdio: 'inherit' })
  })
  // Waited for before returning: a child's pool.end() and exit must not spill into the next side's window.
  const exited = children.map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())))
  const next = (child: (typeof children)[number]): Promise<FromChild> =>
    new Promise((resolve, reject) => {
      child.once('message', (m) => resolve(m as FromChild))
      child.once('exit', (code, signal) => reject(new Error(`hand-loop child exited with ${code ?? signal}`)))
    })
  let results: { cpu: number }[]
  let seconds: number
  try {
    if (warm) await Promise.all(children.map(next))
    const done = children.map(next)
    if (warm) mark?.()
    const t0 = warm ? performance.now() : t00
    if (warm) for (const child of children) child.send('go')
    results = (await Promise.all(done)) as { cpu: number }[]
    seconds = (performance.now() - t0) / 1000
  } catch (error) {
    // One child failed: the other would wait for 'go' (or run on) with nobody listening.
    for (const child of children) child.kill()
    throw error
  }
  await Promise.all(exited)
  return { rate: (share * processes) / seconds, cpu: results.reduce((a, r) => a + r.cpu, 0) }
}
