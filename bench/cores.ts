// What two cores give: the CPU-heavy task's JavaScript (no database) in one worker thread alone, then in
// two at once. The pipeline's "ceiling" assumes each core is as fast with the other one busy; on a
// virtual machine whose cores share a physical one, or under other load, it is not.
import { readFileSync } from 'node:fs'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { cpuWork, HEAVY_ROUNDS } from './workload.ts'

const ROW = { id: 1, name: 'item-1', payload: { sku: 'x'.repeat(32), price: 1.5, tags: ['t1', 't2', 't3'], note: 'y'.repeat(128) }, counter: 0 }

/** CPU seconds of the calling thread (utime + stime of /proc/thread-self/stat, 100 ticks a second). */
function threadCpu(): number {
  const f = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

export interface CoresResult {
  /** Milliseconds of CPU per task, one thread alone. */
  alone: number
  /** Milliseconds of CPU per task in each of two threads running at once (their mean). */
  together: number
}

function measureInThread(tasks: number): { cpuMillisPerTask: number } {
  for (let i = 0; i < 100; i++) cpuWork(ROW, HEAVY_ROUNDS)
  const c0 = threadCpu()
  for (let i = 0; i < tasks; i++) cpuWork(ROW, HEAVY_ROUNDS)
  return { cpuMillisPerTask: ((threadCpu() - c0) * 1000) / tasks }
}

if (!isMainThread && (workerData as { cores?: boolean } | undefined)?.cores) parentPort!.postMessage(measureInThread((workerData as { tasks: number }).tasks))

async function inThreads(k: number, tasks: number): Promise<number[]> {
  const runs = Array.from(
    { length: k },
    () =>
      new Promise<number>((resolve, reject) => {
        const w = new Worker(new URL(import.meta.url), { workerData: { cores: true, tasks } })
        w.once('message', (m: { cpuMillisPerTask: number }) => resolve(m.cpuMillisPerTask))
        w.once('error', reject)
      }),
  )
  return Promise.all(runs)
}

/** One thread alone, then two at once, `reps` times each; medians. Undefined where /proc is missing. */
export async function measureCores(tasks = 600, reps = 3): Promise<CoresResult | undefined> {
  try {
    threadCpu()
  } catch {
    return undefined
  }
  const alone: number[] = []
  const together: number[] = []
  for (let r = 0; r < reps; r++) {
    alone.push(...(await inThreads(1, tasks)))
    const two = await inThreads(2, tasks)
    together.push(two.reduce((a, b) => a + b, 0) / two.length)
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  return { alone: med(alone), together: med(together) }
}
