// The distributed side of the bench: the same pipeline as viaPipeline, through graphile-worker on one
// machine (pgcrew run --distributed), timed from the call (engine start, enqueue and all) to the summary.
import type { Database } from '../src/database/database.ts'
import { definePipeline } from '../src/pipeline/pipeline.ts'
import { runDistributed } from '../src/distributed/distributed-work.ts'
import type { DistributedOptions } from '../src/distributed/distributed-options.ts'
import { tasks, workerUrl } from './pipeline-sides.ts'

export async function viaDistributed(db: Database, name: string, count: number, seed: number, rounds: number, options: DistributedOptions): Promise<number> {
  const def = definePipeline({ name, worker: workerUrl('pipeline-task'), tasks: () => tasks(count, seed, rounds) })
  const start = performance.now()
  const summary = await runDistributed(db, def, options)
  const seconds = (performance.now() - start) / 1000
  if (summary.done !== count) throw new Error(`distributed ${name}: ${summary.done} of ${count} done (${summary.failed} failed: ${summary.failures[0]?.message})`)
  return count / seconds
}
