// CPU and memory an unused crew thread costs: node .tmp/bench-build/bench/idle-thread.js [REPS]
// piscina starts every thread of a crew's budget, and with threads: 'auto' a run of light tasks may
// never take the second one into use. Each rep starts a crew of 1 and one of 2 threads, runs one task
// (so one thread of the two is used), and closes it; the difference is what the idle thread cost.
import { Database } from '../src/database/database.ts'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { workerUrl } from './pipeline-sides.ts'

const reps = Number(process.argv[2] ?? 7)
const cluster = await startTempCluster({})
const db = new Database({ connectionString: cluster.url, max: 1 })
const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
const rssMb = (): number => process.memoryUsage().rss / 2 ** 20
try {
  await db.connect()
  const once = async (threads: number): Promise<{ cpu: number; rss: number }> => {
    const c0 = cpuMs()
    const crew = await db.crew({ worker: workerUrl('noop'), threads, perWorkerConnections: 2 })
    await crew.run({})
    // Give the idle thread time to finish starting: piscina starts it whether or not it gets a task.
    await new Promise((r) => setTimeout(r, 400))
    const rss = rssMb()
    await crew.close()
    return { cpu: cpuMs() - c0, rss }
  }
  await once(1)
  const cpu: number[] = []
  const rss: number[] = []
  for (let i = 0; i < reps; i++) {
    const one = await once(1)
    const two = await once(2)
    cpu.push(two.cpu - one.cpu)
    rss.push(two.rss - one.rss)
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`an unused thread: ${med(cpu).toFixed(0)} ms CPU (${cpu.map((x) => x.toFixed(0)).join(', ')}), ${med(rss).toFixed(1)} MB RSS while the crew is open (median of ${reps})`)
} finally {
  await db.close()
  await cluster.stop()
}
