import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { describeValue, requireWhole } from '../connect/connect-options.ts'
import { DEFAULT_LEDGER, ledgerName } from './pipeline-ledger.ts'
import { isIterable, pipelineProblem, userCode, type PipelineDefinition, type PipelineTask } from './pipeline.ts'

/** Options of {@link planPipeline}; all optional. */
export interface PlanOptions {
  /** Look at the first N tasks of the source only, as `runPipeline({ limit })` would run them. */
  limit?: number
  /** Keys looked up in the ledger per query. Default 1000. */
  batchSize?: number
}

/** Where a pipeline stands, task by task, without running any. */
export interface PipelinePlan {
  pipeline: string
  /** The ledger table, quoted as SQL. */
  ledger: string
  /** Whether the ledger table exists yet (a first run creates it). */
  ledgerExists: boolean
  /** Tasks the source gave (at most `limit`). */
  tasks: number
  /** Done: the ledger says so, or `isComplete(task)` does. A run skips them. */
  done: number
  /** Failed in an earlier run: a run tries them again. */
  failed: number
  /** Never tried. */
  todo: number
}

/**
 * Count what a run would do: how many of the pipeline's tasks are done, failed and still to do.
 * Runs no task and writes nothing: not `setup`, not even the ledger's creation (a `tasks(db)` that
 * needs what `setup` creates fails here until the first run).
 *
 * @example const { done, failed, todo } = await planPipeline(db, await loadPipeline('pipeline.ts'))
 */
export async function planPipeline<T extends PipelineTask>(db: Database, def: PipelineDefinition<T>, options: PlanOptions = {}): Promise<PipelinePlan> {
  const problem = pipelineProblem(def)
  if (problem) throw new PgcrewError('PIPELINE_INVALID', `planPipeline: ${problem}`, { details: { problem } })
  if (options.limit !== undefined) requireWhole('limit', options.limit, 0)
  const limit = options.limit ?? Infinity
  const batchSize = options.batchSize ?? 1000
  const ledger = ledgerName(def.ledger ?? DEFAULT_LEDGER)
  const { rows } = await db.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [ledger])
  const ledgerExists = rows[0]!.exists
  const plan: PipelinePlan = { pipeline: def.name, ledger, ledgerExists, tasks: 0, done: 0, failed: 0, todo: 0 }
  if (limit === 0) return plan
  const source = typeof def.tasks === 'function' ? await userCode(def, 'tasks(db)', async () => (def.tasks as (db: Database) => unknown)(db)) : def.tasks
  if (!isIterable(source)) throw new PgcrewError('PIPELINE_INVALID', `pipeline "${def.name}": tasks(db) must give an iterable of { key } objects; it gave ${describeValue(source)}`)

  const count = async (batch: PipelineTask[]): Promise<void> => {
    const status = ledgerExists ? await statuses(db, ledger, def.name, batch) : new Map<string, string>()
    for (const task of batch) {
      const s = status.get(String(task.key))
      if (s === 'done' || (def.isComplete && (await userCode(def, 'isComplete(task)', async () => def.isComplete!(task as T, db))))) plan.done++
      else if (s === 'failed') plan.failed++
      else plan.todo++
    }
  }
  let batch: PipelineTask[] = []
  for await (const task of source as AsyncIterable<PipelineTask>) {
    if (task === null || typeof task !== 'object' || (typeof task.key !== 'string' && typeof task.key !== 'number')) {
      throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: every task needs a string or number "key"; got ${JSON.stringify(task)?.slice(0, 80)}`)
    }
    batch.push(task)
    if (++plan.tasks >= limit) break
    if (batch.length >= batchSize) {
      await count(batch)
      batch = []
    }
  }
  await count(batch)
  return plan
}

/** The ledger status of each of these keys that has a row: one query per batch. */
async function statuses(db: Database, ledger: string, pipeline: string, batch: readonly PipelineTask[]): Promise<Map<string, string>> {
  if (batch.length === 0) return new Map()
  const keys = batch.map((t) => String(t.key))
  const { rows } = await db.query<{ key: string; status: string }>(`SELECT key, status FROM ${ledger} WHERE pipeline = $1 AND key = ANY($2::text[])`, [pipeline, keys])
  return new Map(rows.map((r) => [r.key, r.status]))
}
