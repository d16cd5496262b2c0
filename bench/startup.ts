// CPU a crew thread costs to start and stop: node .tmp/bench-build/bench/startup.js [REPS]
// Each rep starts a crew of 1 and of 2 threads (the pipeline's worker module, perWorkerConnections 2)
// twice: once running one plain task per thread, so every thread has loaded its modules and connected,
// and once running a single task, so one thread of the two is never used (as a thread that
// threads: 'auto' never takes into use: piscina starts every thread of the budget). The difference
// between the crews is one thread's cost (process CPU: all threads, user+sys; RSS while open).
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
  const once = async (threads: number, tasks: number): Promise<{ cpu: number; rss: number }> => {
    const c0 = cpuMs()
    const crew = await db.crew({ worker: workerUrl('noop'), threads, perWorkerConnections: 2 })
    // Side by side: with a task per connection every thread runs its init (import, connect) once.
    await Promise.all(Array.from({ length: tasks }, () => crew.run({})))
    // Give an unused thread time to finish starting: piscina starts it whether or not it gets a task.
    if (tasks === 1) await new Promise((r) => setTimeout(r, 400))
    const rss = rssMb()
    await crew.close()
    return { cpu: cpuMs() - c0, rss }
  }
  await once(1, 2) // warm-up: the main thread's own first loads (piscina, the crew modules)
  const ones: number[] = []
  const used: number[] = []
  const unused: number[] = []
  const unusedRss: number[] = []
  for (let i = 0; i < reps; i++) {
    const one = await once(1, 2)
    const two = await once(2, 4)
    ones.push(one.cpu)
    used.push(two.cpu - one.cpu)
    const alone = await once(1, 1)
    const idle = await once(2, 1)
    unused.push(idle.cpu - alone.cpu)
    unusedRss.push(idle.rss - alone.rss)
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const list = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ')
  console.log(`crew of 1 thread: ${med(ones).toFixed(0)} ms CPU (start, one task, close); each further thread: ${med(used).toFixed(0)} ms CPU (median of ${reps}; ${list(used)})`)
  console.log(`a thread never given a task: ${med(unused).toFixed(0)} ms CPU (${list(unused)}), ${med(unusedRss).toFixed(1)} MB RSS while the crew is open (medians of ${reps})`)
} finally {
  await db.close()
  await cluster.stop()
}
