import { statSync, type Stats } from 'node:fs'
import { extname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { budgetNumbers, type BudgetNumbers } from '../crew/crew-budget.ts'
import type { Crew, CrewOptions } from '../crew/crew.ts'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { describeValue, requireWhole } from '../connect/connect-options.ts'
import { machineFqdn } from '../connect/profiles.ts'
import { DEFAULT_LEDGER, doneKeys, ensureLedger, ledgerName } from './pipeline-ledger.ts'
import { silentProgress, type ProgressReporter, type ProgressState } from './pipeline-progress.ts'
import { RETRY_DEFAULTS, withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import { attemptTask, taskAttempts } from './task-attempts.ts'
import { TaskBatcher } from './task-batcher.ts'
import type { HistoryOptions } from '../history/run-recorder.ts'
import { isTypeScript, registerTypeScript, tsxMissing } from '../crew/typescript-loader.ts'

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
  const problem = pipelineProblem(def)
  if (problem) throw new PgcrewError('PIPELINE_INVALID', `definePipeline: ${problem}`, { details: { problem } })
  return Object.freeze({ ...def, kind: 'pgcrew.pipeline' as const })
}

export const isIterable = (value: unknown): boolean =>
  value !== null && typeof value === 'object' && (typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function' || typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')

const TASK_SOURCE = 'an array, an iterable or async iterable of { key } objects'
const TASKS_SHAPE = `${TASK_SOURCE}, or a function (db) => one of those`

/** What is wrong with a pipeline definition's shape (undefined when nothing is). */
export function pipelineProblem(def: unknown): string | undefined {
  if (def === null || typeof def !== 'object') return `a pipeline definition is an object { name, worker, tasks }, not ${describeValue(def)}`
  const d = def as Record<string, unknown>
  if (typeof d.name !== 'string' || d.name.trim() === '') {
    return `the pipeline needs a "name": a non-empty string that names it in the ledger (keep it stable across runs); got ${describeValue(d.name)}`
  }
  const named = `pipeline "${d.name}"`
  const worker = d.worker
  if (!(worker instanceof URL || (typeof worker === 'string' && worker.trim() !== '') || (typeof worker === 'object' && worker !== null && typeof (worker as URL).href === 'string'))) {
    return `${named} needs a "worker": the path or URL of a defineWorker module, for example new URL('./worker.ts', import.meta.url); got ${describeValue(worker)}`
  }
  if (typeof d.tasks !== 'function' && !isIterable(d.tasks)) return `${named} needs "tasks": ${TASKS_SHAPE}; got ${describeValue(d.tasks)}`
  for (const hook of ['setup', 'isComplete'] as const) {
    if (d[hook] !== undefined && typeof d[hook] !== 'function') return `${named}: "${hook}" must be a function when given; got ${describeValue(d[hook])}`
  }
  if (d.ledger !== undefined) {
    if (typeof d.ledger !== 'string') return `${named}: "ledger" must be a table name ("table" or "schema.table"); got ${describeValue(d.ledger)}`
    try {
      ledgerName(d.ledger)
    } catch (error) {
      return `${named}: ${(error as Error).message}`
    }
  }
  return undefined
}

/** The message of anything thrown, with its class name when that says something (SyntaxError…). */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const message = error.message || String(error)
  return error.name && error.name !== 'Error' && !message.startsWith(error.name) ? `${error.name}: ${message}` : message
}

/**
 * Run a hook of the user's pipeline: an error it throws is the pipeline's failure, not a pgcrew bug,
 * so it is reported as one line naming the hook (a database error keeps its SQLSTATE as it is).
 */
export async function userCode<R>(def: { name: string }, hook: string, fn: () => Promise<R>): Promise<R> {
  try {
    return await fn()
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw new PgcrewError('PIPELINE_HOOK_FAILED', `pipeline "${def.name}": ${hook} threw ${describeError(error)}`, { cause: error })
  }
}

/** Options of {@link runPipeline}; all optional. */
export interface RunOptions {
  /**
   * Worker threads: a number, or `'auto'` (one at first, more up to every core while each thread in
   * use is CPU-bound; each with perWorkerConnections, default 4). Default: every core.
   */
  threads?: number | 'auto'
  perWorkerConnections?: number
  connectionBudget?: number
  onOverBudget?: 'clamp' | 'refuse'
  /** Retries of a task after a transient error (serialization failure, deadlock, a worker that died). Default 3. */
  retries?: number
  /**
   * How long a lost connection (server gone, restarting, unreachable, full) is retried: a task's, the
   * ledger's, a worker's start. Counted from the first failure of an unbroken run of them. Default 60 000.
   */
  retryWindowMillis?: number
  /** First retry delay; doubles per attempt (up to 2 s), with jitter. Default 100. */
  retryDelayMillis?: number
  /** Keys checked against the ledger per query. Default 1000. */
  batchSize?: number
  /** A trial run: take only the first N tasks of the source (done ones are skipped as always). */
  limit?: number
  /**
   * Tasks sent to a worker in one message (each still runs in its own transaction), so the thread
   * hop is paid once for them. Default: sized by the tasks' measured time, about 50 ms of work per
   * connection of a worker (one task per connection until the first outcomes arrive, then 1 to 16
   * per connection: light tasks 16, a task of a second alone). A fixed number amortises as much for
   * any task but keeps its tasks in flight together (they finish after a Ctrl-C, report progress
   * together, and a message of slow tasks keeps one thread busy while another has none). 1 sends
   * each task alone. With taskTimeoutMillis tasks always go one by one.
   */
  tasksPerMessage?: number
  /** Each task's COMMIT goes out with the next task's BEGIN and ledger claim (one round trip less per task); see {@link CrewOptions.sendCommitWithNext}. Default true. */
  sendCommitWithNext?: boolean
  /** Run the one worker in this thread, not in a worker thread; see {@link CrewOptions.inProcess}. Default false. */
  inProcess?: boolean
  taskTimeoutMillis?: number
  /** Heap limits of each worker thread; see {@link CrewOptions.resourceLimits}. */
  resourceLimits?: CrewOptions['resourceLimits']
  progress?: ProgressReporter
  /** Abort to stop handing out tasks; running ones finish or roll back. */
  signal?: AbortSignal
  /**
   * Stop handing out tasks once this many have failed for good (a wrong table name should not grind
   * through a million tasks); running ones finish, and the summary's `stopReason` says why.
   */
  maxFailures?: number
  /** Told when the run starts and ends, with a live view of its counters. Default: the run history. */
  observer?: RunObserver
  /**
   * Record the run in the record store (schema `pgcrew` of this database): its facts, status,
   * samples and failures, for `pgcrew status | runs | report`. false: record nothing. Default true.
   */
  history?: boolean | HistoryOptions
}

/** The run's counters as they are now, for an observer that samples them. */
export interface LiveRun extends Readonly<ProgressState> {
  /** Tasks done, and failed for good, by worker number. */
  readonly perWorker: Readonly<Record<string, number>>
  readonly failedPerWorker: Readonly<Record<string, number>>
  /** Connections busy now: the main pool's open ones plus the worker connections running a task. */
  readonly connectionsInUse: number
}

/** What an observer's `started` may answer: the run's id in the history, or why it is not recorded. */
export type RunObserved = void | { runId?: number; note?: string }

/** What runPipeline tells an observer (every hook optional; a hook that throws does not stop the run). */
export interface RunObserver {
  /** After the crew is up: its size, and a getter of the live counters. */
  started?(run: { pipeline: string; threads: number; connections: number; budget: BudgetNumbers; live: () => LiveRun }): RunObserved | Promise<RunObserved>
  /** A task failed for good. */
  failed?(failure: RunSummary['failures'][number] & { workerId: number }): void
  /** A task was done, in `millis` in the worker (its successful attempt). Called for every task: keep it cheap. */
  finishedTask?(key: string, millis: number, workerId: number): void
  /** The run ended (`summary`) or threw (`error`). */
  finished?(end: { summary?: RunSummary; error?: unknown }): void | Promise<void>
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
  /** Worker threads that took tasks (with `threads: 'auto'`: the most in use at once; budgetPlan.threads is the most it could take). */
  threads: number
  /** The run chose its threads as it went (`threads: 'auto'`). */
  autoThreads?: true
  /** The one worker ran in this process's main thread (inProcess), not in a worker thread. */
  inProcess: boolean
  connections: number
  /** The connection budget's ceiling (a number, as every figure of the summary). */
  budget: number
  /** How the budget was reached, for people: "budget 97 = max_connections 100 − reserved 3 …; wanted … — fits". */
  budgetExplanation: string
  /** The budget's numbers (main pool, threads, per-worker connections, total). */
  budgetPlan: BudgetNumbers
  perWorker: Record<string, number>
  /** The first 20 permanent failures (`failed` counts them all). */
  failures: { key: string; attempts: number; code?: string; message: string }[]
  /** Why the run stopped before its task source ran out, other than a cancel: `maxFailures` was reached. */
  stopReason?: string
  /** The run's id in the run history (`pgcrew runs show ID`), when it is recorded. */
  runId?: number
  /** Why the run history was not recorded (a role that may not create the store's tables…), when it was not. */
  history?: string
}

const MODULE_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx', '.js', '.mjs', '.cjs', '.jsx'])
const PIPELINE_SHAPE = 'a .ts or .js module whose default export is definePipeline({ name, worker, tasks })'

/**
 * Load a pipeline module (path or file URL) and check its shape. Fails with a `PgcrewError`:
 * `PIPELINE_NOT_FOUND` (no such file), `PIPELINE_LOAD_FAILED` (a directory, not a JS/TS module, or
 * importing it threw: a missing import, a syntax error…) or `PIPELINE_INVALID` (wrong default export).
 */
export async function loadPipeline(spec: string): Promise<PipelineDefinition> {
  let file: string
  try {
    file = spec.startsWith('file:') ? fileURLToPath(spec) : resolve(spec)
  } catch (error) {
    throw new PgcrewError('PIPELINE_NOT_FOUND', `no pipeline module at ${spec}: ${describeError(error)}`, { cause: error })
  }
  let stats: Stats
  try {
    stats = statSync(file)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new PgcrewError('PIPELINE_NOT_FOUND', `no pipeline module at ${spec}: ${file} does not exist`, { cause: error, details: { file } })
    }
    throw new PgcrewError('PIPELINE_LOAD_FAILED', `cannot read pipeline module ${spec}: ${describeError(error)}`, { cause: error, details: { file } })
  }
  if (stats.isDirectory()) {
    throw new PgcrewError('PIPELINE_LOAD_FAILED', `${spec} is a directory; give the pipeline module itself (${PIPELINE_SHAPE})`, { details: { file } })
  }
  if (!MODULE_EXTENSIONS.has(extname(file).toLowerCase())) {
    throw new PgcrewError('PIPELINE_LOAD_FAILED', `${spec} is not a JavaScript or TypeScript module; give ${PIPELINE_SHAPE}`, { details: { file } })
  }
  let mod: { default?: unknown }
  if (isTypeScript(file) && !(await registerTypeScript())) {
    throw new PgcrewError('PIPELINE_LOAD_FAILED', tsxMissing(spec, 'give the built .js file'), {
      details: { file },
    })
  }
  try {
    mod = (await import(spec.startsWith('file:') ? spec : pathToFileURL(file).href)) as typeof mod
  } catch (error) {
    // A PgcrewError may come from another copy of pgcrew (the module imports its own): match it by shape.
    const pgcrewError = error instanceof Error && error.name === 'PgcrewError' && typeof (error as PgcrewError).code === 'string' ? (error as PgcrewError) : undefined
    // definePipeline refused the definition while the module was being imported: name the file.
    const problem = pgcrewError?.code === 'PIPELINE_INVALID' ? pgcrewError.details?.problem : undefined
    if (typeof problem === 'string') throw new PgcrewError('PIPELINE_INVALID', `${spec}: ${problem}`, { cause: error, details: { file, problem } })
    if (error instanceof PgcrewError) throw error
    if (pgcrewError) throw new PgcrewError(pgcrewError.code, `${spec}: ${pgcrewError.message}`, { cause: error, details: { file } })
    throw new PgcrewError('PIPELINE_LOAD_FAILED', `cannot load pipeline module ${spec}: ${describeError(error)}`, { cause: error, details: { file } })
  }
  const def = mod.default as PipelineDefinition | undefined
  if (!def || def.kind !== 'pgcrew.pipeline') throw new PgcrewError('PIPELINE_INVALID', `${spec} must export default definePipeline({ name, worker, tasks })`, { details: { file } })
  const problem = pipelineProblem(def)
  if (problem) throw new PgcrewError('PIPELINE_INVALID', `${spec}: ${problem}`, { details: { file, problem } })
  return def
}

/**
 * Run a pipeline on a crew: skip done keys (one ledger query per batch), run the rest with retries,
 * record failures, and return a summary. Safe to kill at any instant and run again.
 */
export async function runPipeline<T extends PipelineTask>(db: Database, def: PipelineDefinition<T>, options: RunOptions = {}): Promise<RunSummary> {
  const ledger = def.ledger ?? DEFAULT_LEDGER
  // The ledger's `host` of a failure row; the workers' done rows carry the same name (the crew's).
  const host = machineFqdn()
  if (options.retryWindowMillis !== undefined) requireWhole('retryWindowMillis', options.retryWindowMillis, 0)
  const policy = {
    retries: options.retries ?? RETRY_DEFAULTS.retries,
    windowMillis: options.retryWindowMillis ?? RETRY_DEFAULTS.windowMillis,
    firstDelayMillis: options.retryDelayMillis ?? RETRY_DEFAULTS.firstDelayMillis,
  }
  const progress = options.progress ?? silentProgress
  const started = Date.now()
  // Since when nothing has reached the server (tasks and the main thread's own queries): the
  // progress output says "server unreachable" instead of counting failures that are only retries.
  let lostSince: number | undefined
  let showing = false
  const reachable = (): void => {
    lostSince = undefined
  }
  const unreachable = (): void => {
    lostSince ??= Date.now()
  }
  // The main thread's own queries (ledger creation, done keys, failure rows) ride out an outage too.
  const mainRetry: ConnectionRetryOptions = { windowMillis: policy.windowMillis, firstDelayMillis: policy.firstDelayMillis, signal: options.signal, onWait: () => (unreachable(), showing && tick()) }
  const patiently = async <R>(fn: () => Promise<R>): Promise<R> => {
    const result = await withConnectionRetry(fn, mainRetry)
    reachable()
    return result
  }
  // Check the shape before anything runs (setup included), not with a TypeError halfway through.
  const problem = pipelineProblem(def)
  if (problem) throw new PgcrewError('PIPELINE_INVALID', `runPipeline: ${problem}`, { details: { problem } })
  if (options.tasksPerMessage !== undefined) requireWhole('tasksPerMessage', options.tasksPerMessage, 1)
  if (options.maxFailures !== undefined) requireWhole('maxFailures', options.maxFailures, 1)
  if (options.limit !== undefined) requireWhole('limit', options.limit, 0)
  if (!db.connected) await db.connect()
  await userCode(def, 'setup(db)', async () => def.setup?.(db))
  await patiently(() => ensureLedger(db, ledger))
  const source = typeof def.tasks === 'function' ? await userCode(def, 'tasks(db)', async () => (def.tasks as (db: Database) => unknown)(db)) : def.tasks
  if (!isIterable(source)) throw new PgcrewError('PIPELINE_INVALID', `pipeline "${def.name}": tasks(db) must give ${TASK_SOURCE}; it gave ${describeValue(source)}`)
  const total = Array.isArray(source) ? Math.min(source.length, options.limit ?? Infinity) : undefined
  // The run history lives above the pipeline (it builds on the store); loaded on first use, like db.crew().
  const recorder = options.observer || options.history === false ? undefined : await import('../history/run-recorder.ts')
  const crew: Crew = await db.crew({
    worker: def.worker,
    threads: options.threads,
    perWorkerConnections: options.perWorkerConnections,
    connectionBudget: options.connectionBudget,
    // The history's liveness lock has a connection of its own for the whole run.
    besideConnections: recorder?.HISTORY_CONNECTIONS ?? 0,
    onOverBudget: options.onOverBudget,
    taskTimeoutMillis: options.taskTimeoutMillis,
    resourceLimits: options.resourceLimits,
    retryWindowMillis: policy.windowMillis,
    sendCommitWithNext: options.sendCommitWithNext,
    inProcess: options.inProcess,
  })
  const state: ProgressState = { done: 0, skipped: 0, failed: 0, retried: 0, seen: 0, total, elapsedMillis: 0 }
  const perWorker: Record<string, number> = {}
  const failedPerWorker: Record<string, number> = {}
  const failures: RunSummary['failures'] = []
  // Set when maxFailures is reached: nothing more is handed out, like after a Ctrl-C.
  let stopReason: string | undefined
  const stopping = (): boolean => Boolean(fatal || stopReason || options.signal?.aborted)
  const observer = options.observer ?? (recorder ? recorder.runHistory(db, { pipeline: def.name, ledger, total }, typeof options.history === 'object' ? options.history : {}) : undefined)
  let observed = undefined as RunObserved
  // An observer (the run history) must never break the run it watches.
  const observe = async (what: string, fn: () => unknown): Promise<void> => {
    try {
      await fn()
    } catch (error) {
      process.emitWarning(`pgcrew: the run observer's ${what} failed: ${describeError(error)}`)
    }
  }
  // Synchronous, no promise per task: this one is called for every task.
  const observeTask = (key: string, millis: number, workerId: number): void => {
    try {
      observer!.finishedTask!(key, millis, workerId)
    } catch (error) {
      process.emitWarning(`pgcrew: the run observer's finishedTask failed: ${describeError(error)}`)
    }
  }
  // Each message costs ~60 µs of main-thread CPU in piscina (run, postTask, postMessage) and as much in
  // the worker to send its outcomes back: at one task per connection that was most of the crew's overhead.
  // The batcher also says when enough is in flight (batcher.full: two messages per thread; mostTasks
  // bounds the tasks out, those waiting for a retry included).
  const batcher = new TaskBatcher(crew, { tasksPerMessage: options.tasksPerMessage, perWorker: crew.budget.perWorker, threads: () => crew.threads })
  const running = new Set<Promise<void>>()
  // Woken when a task leaves `running`: one waiter, O(1) per task (a Promise.race over `running`
  // would attach a reaction to every running task each time a slot is awaited).
  let slotFreed: (() => void) | undefined
  let fatal: unknown
  function tick(): void {
    const now = Date.now()
    state.elapsedMillis = now - started
    // A single killed connection is not an outage: say so once nothing has got through for a second.
    state.unreachableMillisLeft = lostSince !== undefined && now - lostSince >= 1000 ? Math.max(0, lostSince + policy.windowMillis - now) : undefined
    progress.update(state)
  }

  // One retry loop for a local run and a distributed one (task-attempts.ts).
  const attempts = taskAttempts({
    pipeline: def.name,
    ledger,
    policy,
    counts: state,
    perWorker,
    failures,
    signal: options.signal,
    db,
    host,
    dispatch: (envelope) => batcher.dispatch(envelope),
    patiently,
    onChange: tick,
    onReached: (reached) => (reached ? reachable() : unreachable()),
    onDone: observer?.finishedTask ? (key, out) => out.millis !== undefined && observeTask(key, out.millis, out.workerId) : undefined,
    onFailed: (failure, workerId) => {
      failedPerWorker[workerId] = (failedPerWorker[workerId] ?? 0) + 1
      if (options.maxFailures !== undefined && state.failed >= options.maxFailures && !stopReason) {
        stopReason = `stopped early: ${state.failed} tasks failed, the most allowed (maxFailures ${options.maxFailures}); the last: ${failure.code ? `[${failure.code}] ` : ''}${failure.message}`
      }
      if (observer?.failed) void observe('failed', () => observer.failed!({ ...failure, workerId }))
    },
    onFatal: (error) => {
      fatal ??= error
    },
  })
  // Whether the task was left undone matters to an engine job only; here the counts say it all.
  const runOne = (task: PipelineTask, key: string): Promise<void> => attemptTask(attempts, task, key) as Promise<unknown> as Promise<void>

  const flush = async (batch: PipelineTask[]): Promise<void> => {
    const keys = batch.map((t) => String(t.key))
    // A key given twice is refused when both are in one batch; further apart, the ledger claim makes
    // the second a skip (exactly once either way), without keeping every key of the run in memory.
    const unique = new Set(keys)
    if (unique.size !== keys.length) {
      const twice = keys.find((k, i) => keys.indexOf(k) !== i)
      throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: key "${twice}" appears twice; keys must be unique`)
    }
    let done: Set<string>
    try {
      done = await patiently(() => doneKeys(db, ledger, def.name, keys))
    } catch (error) {
      // Ctrl-C while the server was away: hand out nothing more (the next run resumes).
      if (options.signal?.aborted) return
      throw error
    }
    for (const task of batch) {
      if (stopping()) return
      const key = String(task.key)
      if (done.has(key) || (def.isComplete && (await userCode(def, 'isComplete(task)', async () => def.isComplete!(task as T, db))))) {
        state.skipped++
        tick()
        continue
      }
      while (batcher.full || running.size >= batcher.mostTasks) await new Promise<void>((resolve) => (slotFreed = resolve))
      // Ctrl-C (or a fatal error, or too many failures) may have come while waiting for a free slot: hand out nothing more.
      if (stopping()) return
      const p: Promise<void> = runOne(task, key)
        .catch((error: unknown) => {
          // runOne handles task failures itself; anything else stops the run (never an unhandled rejection).
          fatal ??= error
        })
        .finally(() => {
          running.delete(p)
          slotFreed?.()
          slotFreed = undefined
        })
      running.add(p)
    }
  }

  // Listening also tells the CLI that this command stops gracefully on Ctrl-C (it exits at once otherwise).
  const onAbort = (): void => tick()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  if (observer?.started) {
    const workerConnections = crew.budget.threads * crew.budget.perWorker
    const live = (): LiveRun => ({
      ...state,
      elapsedMillis: Date.now() - started,
      perWorker: { ...perWorker },
      failedPerWorker: { ...failedPerWorker },
      connectionsInUse: db.connectionCount + (recorder?.HISTORY_CONNECTIONS ?? 0) + Math.min(running.size, workerConnections),
    })
    await observe(
      'started',
      async () => (observed = await observer.started!({ pipeline: def.name, threads: crew.budget.threads, connections: crew.budget.total, budget: budgetNumbers(crew.budget), live })),
    )
  }
  progress.start(total)
  showing = true
  let thrown: { error: unknown } | undefined
  try {
    let batch: PipelineTask[] = []
    for await (const task of source as AsyncIterable<PipelineTask>) {
      if (stopping() || state.seen === options.limit) break
      if (task === null || typeof task !== 'object' || (typeof task.key !== 'string' && typeof task.key !== 'number')) {
        throw new PgcrewError('INVALID_TASK', `pipeline ${def.name}: every task needs a string or number "key"; got ${JSON.stringify(task)?.slice(0, 80)}`)
      }
      state.seen++
      batch.push(task)
      if (batch.length >= (options.batchSize ?? 1000)) {
        await flush(batch)
        batch = []
      }
      // Not one task more is pulled from the source than the limit asks for.
      if (state.seen === options.limit) break
    }
    await flush(batch)
    await Promise.allSettled([...running])
  } catch (error) {
    thrown = { error }
    throw error
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await Promise.allSettled([...running])
    state.total = state.seen
    state.elapsedMillis = Date.now() - started
    progress.stop(state)
    await crew.close()
    if (observer?.finished && thrown) await observe('finished', () => observer.finished!({ error: thrown!.error }))
  }
  if (fatal) {
    if (observer?.finished) await observe('finished', () => observer.finished!({ error: fatal }))
    throw fatal
  }
  const durationMillis = Date.now() - started
  const summary: RunSummary = {
    pipeline: def.name,
    seen: state.seen,
    done: state.done,
    skipped: state.skipped,
    failed: state.failed,
    retried: state.retried,
    cancelled: Boolean(options.signal?.aborted),
    durationMillis,
    tasksPerSecond: Math.round((state.done * 1000) / Math.max(1, durationMillis)),
    threads: crew.threadsTaken,
    ...(crew.autoThreads ? { autoThreads: true } : {}),
    inProcess: options.inProcess === true,
    connections: crew.budget.total,
    budget: crew.budget.budget,
    budgetExplanation: crew.budget.explanation,
    budgetPlan: budgetNumbers(crew.budget),
    perWorker,
    failures,
    ...(stopReason ? { stopReason } : {}),
    ...(observed?.runId !== undefined ? { runId: observed.runId } : {}),
    ...(observed?.note !== undefined ? { history: observed.note } : {}),
  }
  if (observer?.finished) await observe('finished', () => observer.finished!({ summary }))
  return summary
}
