// What two cores give: the CPU-heavy task's JavaScript (no database) in one worker thread alone, then in
// two at once, then in two processes at once. The pipeline's "ceiling" assumes each core is as fast with
// the other one busy; on a virtual machine whose cores share a physical one, or under other load, it is
// not. Two threads can also slow each other where two processes do not (one process's shared locks and
// allocator: on Node 20, node:crypto's createHash, which the task calls 1000 times, is such a case).
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
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
  /** The same in each of two processes running at once (their mean). */
  processes: number
  /** Tasks per second of wall time: one thread alone, two threads together, two processes together. */
  rates: { alone: number; threads: number; processes: number }
}

interface Measured {
  cpuMillisPerTask: number
  wallMillis: number
}

function measureInThread(tasks: number): Measured {
  for (let i = 0; i < 100; i++) cpuWork(ROW, HEAVY_ROUNDS)
  const c0 = threadCpu()
  const t0 = performance.now()
  for (let i = 0; i < tasks; i++) cpuWork(ROW, HEAVY_ROUNDS)
  return { cpuMillisPerTask: ((threadCpu() - c0) * 1000) / tasks, wallMillis: performance.now() - t0 }
}

if (!isMainThread && (workerData as { cores?: boolean } | undefined)?.cores) parentPort!.postMessage(measureInThread((workerData as { tasks: number }).tasks))
if (isMainThread && process.send && process.env.PGCREW_BENCH_CORES_CHILD) {
  process.send(measureInThread(Number(process.env.PGCREW_BENCH_CORES_CHILD)))
  process.disconnect()
}

async function inThreads(k: number, tasks: number): Promise<Measured[]> {
  const runs = Array.from(
    { length: k },
    () =>
      new Promise<Measured>((resolve, reject) => {
        const w = new Worker(new URL(import.meta.url), { workerData: { cores: true, tasks } })
        w.once('message', (m: Measured) => resolve(m))
        w.once('error', reject)
      }),
  )
  return Promise.all(runs)
}

async function inProcesses(k: number, tasks: number): Promise<Measured[]> {
  const runs = Array.from(
    { length: k },
    () =>
      new Promise<Measured>((resolve, reject) => {
        const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, PGCREW_BENCH_CORES_CHILD: String(tasks) }, stdio: 'inherit' })
        child.once('message', (m: Measured) => resolve(m))
        child.once('exit', (code) => reject(new Error(`cores child exited with ${code}`)))
        child.once('error', reject)
      }),
  )
  return Promise.all(runs)
}

/** One thread alone, two threads at once and two processes at once, `reps` times each; medians. Undefined where /proc is missing. */
export async function measureCores(tasks = 600, reps = 3): Promise<CoresResult | undefined> {
  try {
    threadCpu()
  } catch {
    return undefined
  }
  const alone: number[] = []
  const together: number[] = []
  const processes: number[] = []
  const rates = { alone: [] as number[], threads: [] as number[], processes: [] as number[] }
  const meanCpu = (ms: Measured[]): number => ms.reduce((a, m) => a + m.cpuMillisPerTask, 0) / ms.length
  // Tasks per second of the group: all its tasks over the slowest member's time (they start together).
  const rate = (ms: Measured[]): number => (ms.length * tasks * 1000) / Math.max(...ms.map((m) => m.wallMillis))
  for (let r = 0; r < reps; r++) {
    const one = await inThreads(1, tasks)
    alone.push(meanCpu(one))
    rates.alone.push(rate(one))
    const threads = await inThreads(2, tasks)
    together.push(meanCpu(threads))
    rates.threads.push(rate(threads))
    const procs = await inProcesses(2, tasks)
    processes.push(meanCpu(procs))
    rates.processes.push(rate(procs))
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  return { alone: med(alone), together: med(together), processes: med(processes), rates: { alone: med(rates.alone), threads: med(rates.threads), processes: med(rates.processes) } }
}
