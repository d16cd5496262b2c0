// Turning a pipeline's tasks into engine jobs: the keys the ledger does not show done, a batch at a
// time (one ledger query and one add_jobs call per batch, each in its own short statement: no
// snapshot is held across the run), several tasks per job.
import { createHash } from 'node:crypto'
import type { AddJobsJobSpec } from 'graphile-worker'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import { doneKeys } from '../pipeline/pipeline-ledger.ts'
import type { PipelineDefinition, PipelineTask } from '../pipeline/pipeline.ts'
import { taskIdentifier, type Engine, type JobPayload } from './distributed-engine.ts'
import { jsonProblem } from './task-json.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'

/** What an enqueue did. */
export interface EnqueueSummary {
  /** Tasks the source gave. */
  seen: number
  /** Skipped because the ledger shows them done (or isComplete said so). */
  alreadyDone: number
  /** Tasks put into jobs. */
  queued: number
  jobs: number
  durationMillis: number
}

/** The advisory lock an enqueuer holds while it adds jobs: machines do not call a pipeline finished meanwhile. */
export function enqueueLockName(pipeline: string): string {
  return `pgcrew.enqueue:${pipeline}`
}

/**
 * A job's key: the pipeline and a digest of its task keys. Two enqueues of the same tasks in the same
 * order make the same keys, and graphile-worker keeps one job per key (the ledger guards the rest).
 */
function jobKey(pipeline: string, keys: readonly string[]): string {
  return `pgcrew:${pipeline}:${createHash('sha1').update(keys.join('\u0000')).digest('hex').slice(0, 24)}`
}

export interface EnqueueContext {
  db: Database
  engine: Engine
  def: PipelineDefinition
  /** The source, already resolved from `def.tasks`. */
  source: Iterable<PipelineTask> | AsyncIterable<PipelineTask>
  ledger: string
  tasksPerJob: number
  batchSize: number
  retry: ConnectionRetryOptions
  signal?: AbortSignal
  isComplete?: (task: PipelineTask) => Promise<boolean>
  onBatch?: (summary: EnqueueSummary) => void
}

/** Check a task's shape at enqueue time: a key, and nothing JSON would change. */
function checkTask(def: PipelineDefinition, task: unknown): PipelineTask {
  if (task === null || typeof task !== 'object' || (typeof (task as PipelineTask).key !== 'string' && typeof (task as PipelineTask).key !== 'number')) {
    throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: every task needs a string or number "key"; got ${JSON.stringify(task)?.slice(0, 80)}`)
  }
  const problem = jsonProblem(task)
  if (problem) {
    throw new PgcrewError(
      'TASK_NOT_JSON',
      `pipeline ${def.name}: task "${(task as PipelineTask).key}" does not survive a JSON round trip, and a distributed run keeps its tasks in the job queue as JSON: ${problem}. Make the task plain data (strings, finite numbers, booleans, null, arrays, plain objects), or run it locally (without --distributed)`,
      { details: { key: (task as PipelineTask).key, problem } },
    )
  }
  return task as PipelineTask
}

/** Add jobs for every task the ledger does not show done. */
export async function enqueueTasks(ctx: EnqueueContext): Promise<EnqueueSummary> {
  const started = Date.now()
  const summary: EnqueueSummary = { seen: 0, alreadyDone: 0, queued: 0, jobs: 0, durationMillis: 0 }
  const identifier = taskIdentifier(ctx.def.name)
  const flush = async (batch: PipelineTask[]): Promise<void> => {
    if (batch.length === 0) return
    const keys = batch.map((t) => String(t.key))
    if (new Set(keys).size !== keys.length) {
      const twice = keys.find((k, i) => keys.indexOf(k) !== i)
      throw new PgcrewError('INVALID_TASK', `pipeline ${ctx.def.name}: key "${twice}" appears twice; keys must be unique`)
    }
    const done = await withConnectionRetry(() => doneKeys(ctx.db, ctx.ledger, ctx.def.name, keys), ctx.retry)
    const todo: PipelineTask[] = []
    for (const task of batch) {
      if (done.has(String(task.key)) || (ctx.isComplete && (await ctx.isComplete(task)))) summary.alreadyDone++
      else todo.push(task)
    }
    const specs: AddJobsJobSpec[] = []
    for (let i = 0; i < todo.length; i += ctx.tasksPerJob) {
      const tasks = todo.slice(i, i + ctx.tasksPerJob)
      specs.push({
        identifier,
        payload: { tasks } satisfies JobPayload,
        jobKey: jobKey(
          ctx.def.name,
          tasks.map((t) => String(t.key)),
        ),
      })
    }
    if (specs.length) await withConnectionRetry(() => ctx.engine.utils.addJobs(specs), ctx.retry)
    summary.queued += todo.length
    summary.jobs += specs.length
    summary.durationMillis = Date.now() - started
    ctx.onBatch?.(summary)
  }
  // Held on an engine connection, not the Database's (whose pool may be a single connection that
  // the ledger queries below need).
  const lock = await withConnectionRetry(() => ctx.engine.pool.connect(), ctx.retry)
  const key = String(hashKey(enqueueLockName(ctx.def.name)))
  try {
    await lock.query('SELECT pg_advisory_lock($1::bigint)', [key])
    let batch: PipelineTask[] = []
    for await (const raw of ctx.source as AsyncIterable<unknown>) {
      if (ctx.signal?.aborted) break
      batch.push(checkTask(ctx.def, raw))
      summary.seen++
      if (batch.length >= ctx.batchSize) {
        await flush(batch)
        batch = []
      }
    }
    if (!ctx.signal?.aborted) await flush(batch)
    await lock.query('SELECT pg_advisory_unlock($1::bigint)', [key])
    lock.release()
  } catch (error) {
    // The session ends with the connection, and the lock with it.
    lock.release(true)
    throw error
  }
  summary.durationMillis = Date.now() - started
  return summary
}
