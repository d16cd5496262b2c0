// `pgcrew retry PIPELINE --failed`: run again only the keys the ledger shows failed. Their attempts
// keep adding up (the ledger row stays until the key is done); the rest of the source is not read
// into the run at all, so a retry of 12 failures out of 10⁶ keys runs 12 tasks.
import type { Database } from '../database/database.ts'
import { definePipeline, runPipeline, type PipelineDefinition, type PipelineTask, type RunOptions, type RunSummary } from '../pipeline/pipeline.ts'
import { DEFAULT_LEDGER } from '../pipeline/pipeline-ledger.ts'
import { failedKeys } from './ledger-queries.ts'

/** Run the failed keys of `def` again; resolves to the run's summary and how many keys were failed. */
export async function retryFailed<T extends PipelineTask>(db: Database, def: PipelineDefinition<T>, options: RunOptions = {}): Promise<{ failedBefore: number; summary: RunSummary }> {
  if (!db.connected) await db.connect()
  const failed = await failedKeys(db, def.ledger ?? DEFAULT_LEDGER, def.name)
  const source = def.tasks
  const only = definePipeline<T>({
    ...def,
    async *tasks(d: Database) {
      if (failed.size === 0) return
      const tasks = typeof source === 'function' ? await source(d) : source
      for await (const task of tasks as AsyncIterable<T>) {
        if (task && failed.has(String(task.key))) yield task
      }
    },
  })
  return { failedBefore: failed.size, summary: await runPipeline(db, only, options) }
}
