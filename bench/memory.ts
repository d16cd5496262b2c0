// Memory: a long pipeline fed from an async iterable, in a process of its own so its peak RSS is its own.
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Database } from '../src/database/database.ts'
import { definePipeline, runPipeline } from '../src/pipeline/pipeline.ts'
import { workerUrl } from './pipeline-sides.ts'

export interface MemoryResult {
  tasks: number
  done: number
  skipped: number
  peakRssMb: number
  seconds: number
}

const peakRssMb = (): number => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024

/** In the child: run `tasks` keys through a no-op pipeline whose ledger already holds all but the last `fresh`. */
export async function memoryChild(): Promise<void> {
  const { url, name, tasks } = await new Promise<{ url: string; name: string; tasks: number }>((r) => process.once('message', r as never))
  const db = new Database({ connectionString: url, max: 2 })
  async function* source(): AsyncGenerator<{ key: string }> {
    for (let i = 1; i <= tasks; i++) yield { key: `task-${i}` }
  }
  const start = performance.now()
  const summary = await runPipeline(db, definePipeline({ name, worker: workerUrl('noop'), tasks: source }), { threads: 2, perWorkerConnections: 2 })
  const result: MemoryResult = { tasks, done: summary.done, skipped: summary.skipped, peakRssMb: peakRssMb(), seconds: (performance.now() - start) / 1000 }
  await db.close()
  process.send!(result)
  process.disconnect()
}

/** Fill the ledger with done keys task-1..task-(tasks-fresh) for `name`, then run the child and return what it saw. */
export async function measureMemory(db: Database, url: string, name: string, tasks: number, fresh: number, script: string): Promise<MemoryResult> {
  await db.query(`INSERT INTO pgcrew_ledger (pipeline, key, status) SELECT $1, 'task-' || g, 'done' FROM generate_series(1, $2::int) g`, [name, tasks - fresh])
  const child = fork(fileURLToPath(script), ['--memory-child'], { stdio: 'inherit' })
  const result = new Promise<MemoryResult>((resolve, reject) => {
    child.once('message', (m) => resolve(m as MemoryResult))
    child.once('exit', (code) => reject(new Error(`memory child exited ${code} before reporting`)))
  })
  child.send({ url, name, tasks })
  return result
}
