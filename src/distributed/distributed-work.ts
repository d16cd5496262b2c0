// One machine of a distributed run: one graphile-worker runner feeding the local crew.
import { availableParallelism } from 'node:os'
import type { Task } from 'graphile-worker'
import type { Database } from '../database/database.ts'
import { budgetNumbers } from '../crew/crew-budget.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { machineFqdn } from '../connect/profiles.ts'
import { RETRY_DEFAULTS, withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import { DEFAULT_LEDGER, ensureLedger, ledgerName } from '../pipeline/pipeline-ledger.ts'
import type { PipelineDefinition, PipelineTask, RunSummary } from '../pipeline/pipeline.ts'
import { resolveDistributed, type DistributedOptions, type DistributedProgress } from './distributed-options.ts'
import { engineLogger, jobsView, machineTag, openEngine, taskIdentifier, type JobPayload } from './distributed-engine.ts'
import { machineBudget } from './distributed-budget.ts'
import { Liveness, sweepDeadPools, type DeadPoolWatch } from './distributed-liveness.ts'
import { startEngineRunner, type EngineRunner } from './distributed-runner.ts'
import { jobContext, runJobTasks, type MachineCounts } from './distributed-tasks.ts'
import { enqueueLockName, enqueueTasks, type EnqueueSummary } from './distributed-enqueue.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'

/** What one machine did (the fields of a local run's summary, and the machine's own). */
export interface WorkSummary extends Omit<RunSummary, 'seen'> {
  host: string
  /** graphile-worker's id of this machine's pool: the name of its liveness lock. */
  poolId: string
  /** Jobs this machine ran. */
  jobs: number
  /** Done keys of the pipeline in the ledger at the end, every machine included. */
  pipelineDone: number
  /** Dead machines' jobs this machine freed. */
  freed: { poolIds: string[]; jobs: number }
  /** Set when this machine enqueued (`runDistributed`). */
  enqueued?: EnqueueSummary
}

/** A throw from the user's pipeline hook is the pipeline's failure, one line naming the hook. */
async function userCode<R>(def: { name: string }, hook: string, fn: () => Promise<R>): Promise<R> {
  try {
    return await fn()
  } catch (error) {
    if (error instanceof PgcrewError) throw error
    throw new PgcrewError('PIPELINE_HOOK_FAILED', `pipeline "${def.name}": ${hook} threw ${error instanceof Error ? error.message : String(error)}`, { cause: error })
  }
}

/** Is this (single-bigint) advisory lock held by any session of this database? */
async function lockHeld(db: Database, key: bigint): Promise<boolean> {
  const { rows } = await db.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::bigint = ($1::bigint >> 32) & 4294967295 AND l.objid::bigint = $1::bigint & 4294967295) AS held`,
    [String(key)],
  )
  return rows[0]!.held
}

/**
 * Join a distributed run of `def` on this machine: fetch its jobs from the queue and run their tasks
 * on a local crew until the queue is empty (or, with `follow`, until `signal` aborts).
 *
 * @example const summary = await workPipeline(db, await loadPipeline('./stars.ts'), { threads: 4 })
 */
export function workPipeline(db: Database, def: PipelineDefinition, options: DistributedOptions = {}): Promise<WorkSummary> {
  return machine(db, def, options, false)
}

/**
 * Enqueue the keys of `def` the ledger does not show done, then work on them like every other
 * machine (`workPipeline` elsewhere joins in). Tasks must survive a JSON round trip (TASK_NOT_JSON).
 */
export function runDistributed(db: Database, def: PipelineDefinition, options: DistributedOptions = {}): Promise<WorkSummary> {
  return machine(db, def, options, true)
}

async function machine(db: Database, def: PipelineDefinition, options: DistributedOptions, enqueue: boolean): Promise<WorkSummary> {
  const o = resolveDistributed(options)
  const ledger = def.ledger ?? DEFAULT_LEDGER
  ledgerName(ledger)
  const policy = {
    retries: o.retries ?? RETRY_DEFAULTS.retries,
    windowMillis: o.retryWindowMillis ?? RETRY_DEFAULTS.windowMillis,
    firstDelayMillis: o.retryDelayMillis ?? RETRY_DEFAULTS.firstDelayMillis,
  }
  const retry: ConnectionRetryOptions = { windowMillis: policy.windowMillis, firstDelayMillis: policy.firstDelayMillis, signal: o.signal }
  const patiently = <R>(fn: () => Promise<R>): Promise<R> => withConnectionRetry(fn, retry)
  const started = Date.now()
  const host = o.host ?? machineFqdn(process.env)
  if (!db.connected) await db.connect()
  await userCode(def, 'setup(db)', async () => def.setup?.(db))
  await patiently(() => ensureLedger(db, ledger))
  const source = enqueue ? await userCode(def, 'tasks(db)', async () => (typeof def.tasks === 'function' ? await def.tasks(db) : def.tasks)) : undefined

  const tag = machineTag()
  const logger = engineLogger((line) => o.onEvent?.({ type: 'engine', message: line }))
  const engine = await openEngine(db, { schema: o.schema, connections: o.engineConnections, tag, logger, retry })
  let live: Liveness | undefined
  let runner: EngineRunner | undefined
  let crew: Awaited<ReturnType<Database['crew']>> | undefined
  let sweeper: NodeJS.Timeout | undefined
  let ticker: NodeJS.Timeout | undefined
  const counts: MachineCounts = { done: 0, skipped: 0, failed: 0, retried: 0, jobs: 0, perWorker: {}, failures: [] }
  const freed = { poolIds: [] as string[], jobs: 0 }
  let pipelineDone = 0
  let jobsLeft = 0
  let enqueued: EnqueueSummary | undefined
  let poolId: string
  try {
    const budget = await patiently(() =>
      machineBudget(
        db,
        {
          threads: o.threads ?? availableParallelism(),
          perWorker: o.perWorkerConnections ?? 1,
          engine: o.engineConnections + 1,
          connectionBudget: o.connectionBudget,
          onOverBudget: o.onOverBudget ?? 'clamp',
          tag,
        },
        (name) =>
          Liveness.open(db, name, retry, {
            onLost: (error) =>
              o.onEvent?.({ type: 'engine', message: `the liveness lock went with its session (${error instanceof Error ? error.message : String(error)}); fetching no job until it is back` }),
            onBack: (ms) => o.onEvent?.({ type: 'engine', message: `the liveness lock is back after ${(ms / 1000).toFixed(1)} s; fetching again` }),
          }),
      ),
    )
    live = budget.opened
    const plan = budget.plan
    crew = await db.crew({
      worker: def.worker,
      threads: plan.threads,
      perWorkerConnections: plan.perWorker,
      // The engine and liveness connections are spent already: the crew gets the rest.
      connectionBudget: plan.budget - o.engineConnections - 1,
      onOverBudget: 'clamp',
      taskTimeoutMillis: o.taskTimeoutMillis,
      resourceLimits: o.resourceLimits,
      retryWindowMillis: policy.windowMillis,
      applicationName: `pgcrew ${tag}`,
      host,
    })
    // No job is fetched while this machine's liveness lock is missing (see Liveness.gate).
    const connect = engine.pool.connect.bind(engine.pool) as (callback?: unknown) => Promise<unknown> | undefined
    const gated = live
    // pg-pool's connect() takes a callback too (graphile-worker releases through that form).
    ;(engine.pool as unknown as { connect: (callback?: unknown) => unknown }).connect = (callback?: unknown) => {
      // A lock that cannot be had (the server away for the whole window) fails the engine's connect, as the server would.
      const ready = gated.gate
      if (typeof callback === 'function')
        return void ready.then(
          () => connect(callback),
          (error: unknown) => (callback as (e: unknown) => void)(error),
        )
      return ready.then(() => connect())
    }

    const progress = (): void =>
      o.onProgress?.({
        done: counts.done,
        skipped: counts.skipped,
        failed: counts.failed,
        retried: counts.retried,
        elapsedMillis: Date.now() - started,
        pipelineDone,
        jobsLeft,
      } satisfies DistributedProgress)
    const ctx = jobContext({ db, crew, pipeline: def.name, ledger, policy, counts, signal: o.signal, mainRetry: retry, host })
    let checkSoon = (): void => {}
    const handler: Task = async (payload) => {
      if (counts.fatal) throw counts.fatal
      const left = await runJobTasks(ctx, (payload as JobPayload).tasks)
      checkSoon()
      // Rolled back while stopping: failing the job puts it back in the queue for another machine.
      if (left > 0) throw new PgcrewError('CANCELLED', `${left} of the job's tasks rolled back as this machine stopped; another machine runs them`)
    }

    let stop: (reason: string) => void = () => {}
    // One message per job to a worker thread, and a second job per connection waiting, so a thread
    // never idles while the engine hands it the next one.
    const jobsAtOnce = plan.threads * plan.perWorker * 2
    runner = await startEngineRunner({
      engine,
      live,
      retry,
      run: {
        schema: o.schema,
        taskList: { [taskIdentifier(def.name)]: handler },
        concurrency: jobsAtOnce,
        noHandleSignals: true,
        pollInterval: o.pollIntervalMillis,
        logger,
        parsedCronItems: [],
        // No local queue: when a connection is lost as it returns the jobs it fetched ahead (a server
        // restart), graphile-worker 0.17 throws from a background promise and the process dies. Each
        // of its workers fetches its own job instead (a job carries tasksPerJob tasks, so that query is
        // shared by them). Completions stay batched: one that fails ends the pool, and the runner
        // (distributed-runner.ts) starts another.
        preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      },
      onReplaced: (oldPoolId, newPoolId, reason) => {
        poolId = newPoolId
        o.onEvent?.({ type: 'engine', message: `the job engine gave up pool ${oldPoolId} (${reason}); pool ${newPoolId} took its place, and the old pool's jobs go back to the queue` })
      },
      onFatal: (error) => {
        counts.fatal ??= error
        stop('fatal')
      },
    })
    poolId = runner.poolId
    o.onEvent?.({ type: 'started', poolId, host, tag, budget: plan.explanation })

    const watch: DeadPoolWatch = { deadAfterMillis: o.deadAfterMillis, missingSince: new Map() }
    const stopping = new Promise<string>((resolve) => {
      stop = resolve
      const onAbort = (): void => resolve('interrupted')
      if (o.signal?.aborted) onAbort()
      o.signal?.addEventListener('abort', onAbort, { once: true })
      let enqueuing = enqueue
      let sweeping = false
      const sweep = async (): Promise<void> => {
        if (sweeping) return
        sweeping = true
        try {
          const f = await sweepDeadPools(db, engine, watch)
          if (f.jobs > 0) {
            freed.poolIds.push(...f.poolIds)
            freed.jobs += f.jobs
            o.onEvent?.({ type: 'freed', ...f })
          }
          const { rows } = await db.query<{ left: number; done: number }>(
            `SELECT (SELECT count(*)::int FROM ${jobsView(o.schema)} WHERE task_identifier = $1 AND attempts < max_attempts) AS left,
                    (SELECT count(*)::int FROM ${ledgerName(ledger)} WHERE pipeline = $2 AND status = 'done') AS done`,
            [taskIdentifier(def.name), def.name],
          )
          jobsLeft = rows[0]!.left
          pipelineDone = rows[0]!.done
          if (counts.fatal) resolve('fatal')
          else if (!o.follow && !enqueuing && jobsLeft === 0 && !(await lockHeld(db, hashKey(enqueueLockName(def.name))))) resolve('finished')
        } catch {
          // The server is away (restarting): the next sweep tries again; the tasks retry on their own.
        } finally {
          sweeping = false
        }
      }
      sweeper = setInterval(() => void sweep(), o.sweepIntervalMillis)
      // The end of the queue is seen soon after the last job, not a whole sweep interval later.
      let soon: NodeJS.Timeout | undefined
      checkSoon = () => {
        if (enqueuing || soon) return
        soon = setTimeout(() => {
          soon = undefined
          void sweep()
        }, 200)
        soon.unref()
      }
      ticker = setInterval(progress, 1000)
      if (enqueue) {
        void enqueueTasks({
          db,
          engine,
          def,
          source: source as Iterable<PipelineTask>,
          ledger,
          tasksPerJob: o.tasksPerJob,
          batchSize: o.enqueueBatchSize,
          retry,
          signal: o.signal,
          isComplete: def.isComplete ? (task) => userCode(def, 'isComplete(task)', async () => def.isComplete!(task, db)) : undefined,
        }).then(
          (summary) => {
            enqueued = summary
            enqueuing = false
            void sweep()
          },
          (error: unknown) => {
            counts.fatal ??= error
            resolve('fatal')
          },
        )
      } else void sweep()
    })
    const reason = await stopping
    if (reason !== 'finished') o.onEvent?.({ type: 'stopping', reason: reason === 'interrupted' ? 'interrupted: returning fetched jobs, finishing the running ones' : 'stopping after an error' })
    clearInterval(sweeper)
    // Stops fetching, returns the jobs fetched ahead, waits for the running ones.
    await runner.stop()
    runner = undefined
    const final = await db.query<{ done: number }>(`SELECT count(*)::int AS done FROM ${ledgerName(ledger)} WHERE pipeline = $1 AND status = 'done'`, [def.name]).catch(() => undefined)
    if (final) pipelineDone = final.rows[0]!.done
    progress()
    if (counts.fatal)
      throw counts.fatal instanceof Error ? counts.fatal : new PgcrewError(String((counts.fatal as { code?: string }).code ?? 'TASK_FAILED'), String((counts.fatal as { message?: string }).message))
    const durationMillis = Date.now() - started
    return {
      pipeline: def.name,
      host,
      poolId,
      done: counts.done,
      skipped: counts.skipped,
      failed: counts.failed,
      retried: counts.retried,
      inProcess: false,
      jobs: counts.jobs,
      cancelled: Boolean(o.signal?.aborted),
      durationMillis,
      tasksPerSecond: Math.round((counts.done * 1000) / Math.max(1, durationMillis)),
      threads: crew.budget.threads,
      connections: plan.total,
      budget: plan.budget,
      budgetExplanation: plan.explanation,
      budgetPlan: budgetNumbers(plan),
      perWorker: counts.perWorker,
      failures: counts.failures,
      pipelineDone,
      freed,
      ...(enqueued ? { enqueued } : {}),
    }
  } finally {
    clearInterval(sweeper)
    clearInterval(ticker)
    await runner?.stop().catch(() => {})
    await crew?.close()
    // Last: the lock says "alive" for as long as this machine may hold jobs.
    await live?.close()
    await engine.close()
  }
}
