// CPU a crew thread costs to start and stop: node .tmp/bench-build/bench/startup.js [REPS]
// Each rep starts a crew of 1 and of 2 threads (the pipeline's worker module, perWorkerConnections 2),
// runs one plain task per thread so every thread has imported its modules and connected, and closes
// it; the difference between the two is one thread's cost (process CPU: all threads, user+sys).
import { Database } from '../src/database/database.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { workerUrl } from './pipeline-sides.ts'

const reps = Number(process.argv[2] ?? 5)
const cluster = await startTempCluster({})
const db = new Database({ connectionString: cluster.url, max: 1 })
const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
try {
  await db.connect()
  const once = async (threads: number): Promise<number> => {
    const c0 = cpuMs()
    const crew = await db.crew({ worker: workerUrl('noop'), threads, perWorkerConnections: 2 })
    // One task each, side by side: every thread runs its init (import, connect) once.
    await Promise.all(Array.from({ length: threads * 2 }, () => crew.run({})))
    await crew.close()
    return cpuMs() - c0
  }
  await once(1) // warm-up: the main thread's own first loads (piscina, the crew modules)
  const per: number[] = []
  const ones: number[] = []
  for (let i = 0; i < reps; i++) {
    const one = await once(1)
    const two = await once(2)
    ones.push(one)
    per.push(two - one)
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(
    `crew of 1 thread: ${med(ones).toFixed(0)} ms CPU (start, one task, close); each further thread: ${med(per).toFixed(0)} ms CPU (median of ${reps}; ${per.map((x) => x.toFixed(0)).join(', ')})`,
  )
} finally {
  await db.close()
  await cluster.stop()
}
