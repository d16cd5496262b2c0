import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { backoffMillis } from './backoff.ts'
import type { Crew, CrewOptions } from './crew.ts'
import type { Database } from './database.ts'
import { PgcrewError } from './errors.ts'
import { DEFAULT_LEDGER, doneKeys, ensureLedger, recordFailure } from './ledger.ts'
import { silentProgress, type ProgressReporter, type ProgressState } from './progress.ts'

/** A task: any structured-cloneable object with a stable `key`. */
export type PipelineTask = { key: string | number } & Record<string, unknown>

/** What a pipeline module's default export describes. */
export interface PipelineDefinition<T extends PipelineTask = PipelineTask> {
  readonly kind: 'pgcrew.pipeline'
  /** Names the pipeline in the ledger: keep it stable across runs. */
  name: string
  /** The worker module (path or URL); its handler gets `{ tx }` bound to the task's transaction. */
  worker: string | URL
  /** The task source: an array, iterable or async iterable, or a function of the Database giving one. */
  tasks: Iterable<T> | AsyncIterable<T> | ((db: Database) => Iterable<T> | AsyncIterable<T> | Promise<Iterable<T> | AsyncIterable<T>>)
  /** Create tables and the like; runs once in the main thread before any task. */
  setup?(db: Database): Promise<void> | void
  /** Skip a task without running it (checked in the main thread after the ledger). */
  isComplete?(task: T, db: Database): boolean | Promise<boolean>
  /** The ledger table (`table` or `schema.table`). Default `pgcrew_ledger`. */
  ledger?: string
}

/**
 * Define a pipeline module's default export.
 *
 * @example
 * export default definePipeline({ name: 'stars', worker: new URL('./star-worker.ts', import.meta.url),
 *   tasks: (db) => db.query('select id as key from stars').then((r) => r.rows) })
 */
export function definePipeline<T extends PipelineTask>(def: Omit<PipelineDefinition<T>, 'kind'>): PipelineDefinition<T> {
  return Object.freeze({ ...def, kind: 'pgcrew.pipeline' as const })
}

/** Options of {@link runPipeline}; all optional. */
export interface RunOptions {
  threads?: number
  perWorkerConnections?: number
  connectionBudget?: number
  onOverBudget?: 'clamp' | 'refuse'
  /** Retries of a task after a transient error (serialization failure, deadlock, lost connection…). Default 3. */
  retries?: number
  /** First retry delay; doubles per attempt, with jitter. Default 100. */
  retryDelayMillis?: number
  /** Keys checked against the ledger per query. Default 1000. */
  batchSize?: number
  taskTimeoutMillis?: number
  /** Heap limits of each worker thread; see {@link CrewOptions.resourceLimits}. */
  resourceLimits?: CrewOptions['resourceLimits']
  progress?: ProgressReporter
  /** Abort to stop handing out tasks; running ones finish or roll back. */
  signal?: AbortSignal
}

/** What a run did. */
export interface RunSummary {
  pipeline: string
  seen: number
  done: number
  skipped: number
  failed: number
  retried: number
  cancelled: boolean
  durationMillis: number
  tasksPerSecond: number
  threads: number
  connections: number
  budget: string
  perWorker: Record<string, number>
  /** The first 20 permanent failures. */
  failures: { key: string; attempts: number; code?: string; message: string }[]
}

/** Load a pipeline module (path or URL) and check its shape. */
export async function loadPipeline(spec: string): Promise<PipelineDefinition> {
  const url = spec.startsWith('file:') ? spec : pathToFileURL(isAbsolute(spec) ? spec : resolve(spec)).href
  let mod: { default?: unknown }
  try {
    mod = (await import(url)) as typeof mod
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes(url.replace('file://', ''))) {
      throw new PgcrewError('PIPELINE_NOT_FOUND', `no pipeline module at ${spec}`, { cause: error })
    }
    throw error
  }
  const def = mod.default as PipelineDefinition | undefined
  if (!def || def.kind !== 'pgcrew.pipeline') throw new PgcrewError('PIPELINE_INVALID', `${spec} must export default definePipeline({ name, worker, tasks })`)
  return def
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Run a pipeline on a crew: skip done keys (one ledger query per batch), run the rest with retries,
 * record failures, and return a summary. Safe to kill at any instant and run again.
 */
export async function runPipeline<T extends PipelineTask>(db: Database, def: PipelineDefinition<T>, options: RunOptions = {}): Promise<RunSummary> {
  const ledger = def.ledger ?? DEFAULT_LEDGER
  const retries = options.retries ?? 3
  const progress = options.progress ?? silentProgress
  const started = Date.now()
  if (!db.connected) await db.connect()
  await def.setup?.(db)
  await ensureLedger(db, ledger)
  const source = typeof def.tasks === 'function' ? await def.tasks(db) : def.tasks
  const total = Array.isArray(source) ? source.length : undefined
  const crew: Crew = await db.crew({
    worker: def.worker,
    threads: options.threads,
    perWorkerConnections: options.perWorkerConnections,
    connectionBudget: options.connectionBudget,
    onOverBudget: options.onOverBudget,
    taskTimeoutMillis: options.taskTimeoutMillis,
    resourceLimits: options.resourceLimits,
  })
  const state: ProgressState = { done: 0, skipped: 0, failed: 0, retried: 0, seen: 0, total, elapsedMillis: 0 }
  const perWorker: Record<string, number> = {}
  const failures: RunSummary['failures'] = []
  const limit = crew.budget.threads * crew.budget.perWorker * 2
  const running = new Set<Promise<void>>()
  let fatal: unknown
  const tick = () => {
    state.elapsedMillis = Date.now() - started
    progress.update(state)
  }

  const runOne = async (task: PipelineTask, key: string): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const out = await crew.dispatch({ mode: 'pipeline', task, attempt, pipeline: def.name, key, ledger })
      if (out.ok) {
        if (out.skipped) state.skipped++
        else {
          state.done++
          perWorker[out.workerId] = (perWorker[out.workerId] ?? 0) + 1
        }
        return tick()
      }
      if (out.error.code === 'WORKER_INIT_FAILED' || out.error.code === 'CLOSED') {
        fatal ??= new PgcrewError(out.error.code, out.error.message)
        return
      }
      if (out.error.transient && attempt <= retries && !options.signal?.aborted) {
        state.retried++
        await sleep(backoffMillis(options.retryDelayMillis ?? 100, attempt))
        continue
      }
      state.failed++
      if (failures.length < 20) failures.push({ key, attempts: attempt, code: out.error.code, message: out.error.message })
      await recordFailure(db, ledger, def.name, key, attempt, out.error.message)
      return tick()
    }
  }

  const flush = async (batch: PipelineTask[]): Promise<void> => {
    const keys = batch.map((t) => String(t.key))
    const done = await doneKeys(db, ledger, def.name, keys)
    for (const task of batch) {
      if (fatal || options.signal?.aborted) return
      const key = String(task.key)
      if (done.has(key) || (def.isComplete && (await def.isComplete(task as T, db)))) {
        state.skipped++
        tick()
        continue
      }
      while (running.size >= limit) await Promise.race(running)
      const p = runOne(task, key).finally(() => running.delete(p))
      running.add(p)
    }
  }

  // Listening also tells the CLI that this command stops gracefully on Ctrl-C (it exits at once otherwise).
  const onAbort = (): void => tick()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  progress.start(total)
  try {
    let batch: PipelineTask[] = []
    const seenKeys = new Set<string>()
    for await (const task of source as AsyncIterable<PipelineTask>) {
      if (fatal || options.signal?.aborted) break
      if (task === null || typeof task !== 'object' || (typeof task.key !== 'string' && typeof task.key !== 'number')) {
        throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: every task needs a string or number "key"; got ${JSON.stringify(task)?.slice(0, 80)}`)
      }
      const key = String(task.key)
      if (seenKeys.has(key)) throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: key "${key}" appears twice; keys must be unique`)
      seenKeys.add(key)
      state.seen++
      batch.push(task)
      if (batch.length >= (options.batchSize ?? 1000)) {
        await flush(batch)
        batch = []
      }
    }
    await flush(batch)
    await Promise.allSettled([...running])
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await Promise.allSettled([...running])
    state.total = state.seen
    state.elapsedMillis = Date.now() - started
    progress.stop(state)
    await crew.close()
  }
  if (fatal) throw fatal
  const durationMillis = Date.now() - started
  return {
    pipeline: def.name,
    seen: state.seen,
    done: state.done,
    skipped: state.skipped,
    failed: state.failed,
    retried: state.retried,
    cancelled: Boolean(options.signal?.aborted),
    durationMillis,
    tasksPerSecond: Math.round((state.done * 1000) / Math.max(1, durationMillis)),
    threads: crew.budget.threads,
    connections: crew.budget.total,
    budget: crew.budget.explanation,
    perWorker,
    failures,
  }
}
