import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { extname, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { inspect } from 'node:util'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { BroadcastChannel, type ResourceLimits } from 'node:worker_threads'
import { Piscina } from 'piscina'
import { inlineThreads, type CrewThreads } from './crew-inline.ts'
import { computeBudget, type BudgetPlan } from './crew-budget.ts'
import { TaskError, type BatchEnvelope, type CrewMessage, type CrewWorkerData, type SerializedError, type TaskEnvelope, type TaskOutcome } from './crew-protocol.ts'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { requireWhole } from '../connect/connect-options.ts'
import { machineFqdn } from '../connect/profiles.ts'

/** Options of `db.crew()`; every field but `worker` is optional. */
export interface CrewOptions {
  /** The worker module (path or URL) whose default export comes from `defineWorker`. */
  worker: string | URL
  /**
   * Worker threads. Default: every core (`os.availableParallelism()`). `'auto'`: start with one
   * thread and add one, up to every core, while every thread in use keeps its event loop busy
   * ({@link AUTO_BUSY} of the time over {@link AUTO_CHECK_MILLIS}, twice running): light tasks that
   * wait on the database stay on one thread with all its connections, tasks with milliseconds of
   * JavaScript spread over the cores. Threads not yet in use are started but open no connection.
   */
  threads?: number | 'auto'
  /** Pool size inside each worker. Default 1 (one task at a time per worker); with `threads: 'auto'` {@link AUTO_PER_WORKER}. */
  perWorkerConnections?: number
  /** Ceiling on main + threads × perWorker; default from the server's max_connections. */
  connectionBudget?: number
  /** Connections the caller holds beside the main pool while the crew runs (runPipeline's run history: 1), counted in the budget. Default 0. */
  besideConnections?: number
  /** What to do when over budget. Default 'clamp'. */
  onOverBudget?: 'clamp' | 'refuse'
  /** Abort (and fail) a task running longer than this. Default: no limit. */
  taskTimeoutMillis?: number
  /** How long close() waits for workers to end their pools. Default 10 000. */
  closeTimeoutMillis?: number
  /**
   * Heap limits of each worker thread (Node's `ResourceLimits`, e.g. `{ maxOldGenerationSizeMb: 512 }`).
   * A worker that runs out is replaced and its task fails with WORKER_CRASHED. Default: Node's.
   */
  resourceLimits?: ResourceLimits
  /**
   * How long a worker's start waits and retries while the server has no free slot (53300), is
   * starting up (57P03) or cannot be reached. Default 60 000 (RETRY_DEFAULTS.windowMillis).
   */
  retryWindowMillis?: number
  /**
   * The start of each worker session's `application_name`: `<applicationName> worker <n>`. Default
   * 'pgcrew'. A machine of a distributed run puts its tag here, so the others can count its sessions.
   */
  applicationName?: string
  /** The ledger's `host` for this crew's tasks. Default: this machine's FQDN (`PGCREW_HOSTNAME` wins). */
  host?: string
  /**
   * In a batch of pipeline tasks, send each task's COMMIT together with the next task's BEGIN and
   * ledger claim on the same connection: one round trip less per task. Default true; false sends
   * each COMMIT alone.
   */
  sendCommitWithNext?: boolean
  /**
   * Run the crew's one worker in this thread instead of a worker thread: same init hook, a Database
   * of its own rebuilt from the snapshot, the same ledger rules. Faster for light database-bound
   * tasks on a machine with few cores (no thread hop, no second isolate); it cannot take a task
   * timeout or heap limits, and a task's JavaScript blocks this thread while it runs. Default false.
   */
  inProcess?: boolean
}

/** A task under taskTimeoutMillis: its timer runs from the worker's 'started' message. */
interface TimedTask {
  timer?: NodeJS.Timeout
  timedOut: boolean
}

const DEFAULTS = Object.freeze({ perWorkerConnections: 1, onOverBudget: 'clamp' as const, closeTimeoutMillis: 10_000 })

/** With `threads: 'auto'`, each thread's connections unless perWorkerConnections says otherwise: one thread must carry a run's concurrency alone. */
export const AUTO_PER_WORKER = 4
/**
 * With `threads: 'auto'`, the share of time a thread's event loop must be busy for it to count as
 * CPU-bound… (measured here, 200 ms readings: a thread of light database-bound tasks at 4
 * connections 0.40–0.83, one of CPU-heavy tasks, ~1 ms of JavaScript each, 0.96–0.98).
 */
export const AUTO_BUSY = 0.9
/** …measured over this long, and twice in a row before another thread is taken into use. */
export const AUTO_CHECK_MILLIS = 200

/** A thread as piscina's load balancer sees it. */
interface BalancedWorker {
  readonly id: number
  readonly currentUsage: number
}

/**
 * `threads: 'auto'`: which threads take tasks. piscina starts every thread of the budget (a thread
 * that never gets a task loads neither pg nor pgcrew's runtime, never runs the init hook and opens no
 * connection: workers/crew-worker.ts); the balancer hands tasks only to threads in use, and takes one
 * more into use when the crew allows it.
 */
class AutoThreads {
  /** Threads allowed in use: 1 at first, up to the budget's threads. */
  allowed = 1
  /** Threads that have been given a task, by thread id. */
  readonly used = new Set<number>()
  /** The most threads in use at once so far: what the run took. */
  peak = 0
  /** Each ready thread's event-loop reading at the last check: a thread's first reading after its init is its baseline, the next one judges it. */
  readonly #readings = new Map<number, EventLoopUtilization>()
  #busyChecks = 0
  #timer: NodeJS.Timeout | undefined

  constructor(
    readonly most: number,
    readonly perThread: number,
  ) {}

  /** piscina's balancer: the least busy thread in use with room, or a new one when more are allowed. */
  readonly balance = (_task: unknown, workers: readonly BalancedWorker[]): BalancedWorker | null => {
    let members = 0
    for (const worker of workers) if (this.used.has(worker.id)) members++
    if (members < this.used.size) this.#forgetGone(workers)
    let best: BalancedWorker | null = null
    for (const worker of workers) {
      if (worker.currentUsage >= this.perThread) continue
      const member = this.used.has(worker.id)
      if (!member && this.used.size >= this.allowed) continue
      if (!best || worker.currentUsage < best.currentUsage) best = worker
    }
    if (best) {
      this.used.add(best.id)
      if (this.used.size > this.peak) this.peak = this.used.size
    }
    return best
  }

  /**
   * Look at the threads in use every AUTO_CHECK_MILLIS; allow one more while all of them are busy.
   * A thread is judged only from its first reading after its init (`ready`): importing the worker
   * module, connecting and the init hook keep a loop busy too, and are no sign that tasks need
   * another thread (a short run under load took a second thread for its first one's start-up).
   */
  start(
    threads: () => ReadonlyArray<{ threadId: number; performance?: { eventLoopUtilization(...readings: EventLoopUtilization[]): EventLoopUtilization } }>,
    ready: (threadId: number) => boolean,
  ): void {
    if (this.most <= 1) return
    this.#timer = setInterval(() => {
      let busy = this.used.size >= this.allowed
      for (const thread of threads()) {
        if (!thread.performance) continue
        if (!ready(thread.threadId)) {
          if (this.used.has(thread.threadId)) busy = false
          continue
        }
        const now = thread.performance.eventLoopUtilization()
        const before = this.#readings.get(thread.threadId)
        this.#readings.set(thread.threadId, now)
        if (this.used.has(thread.threadId) && (!before || thread.performance.eventLoopUtilization(now, before).utilization < AUTO_BUSY)) busy = false
      }
      this.#busyChecks = busy ? this.#busyChecks + 1 : 0
      if (this.#busyChecks >= 2) {
        this.#busyChecks = 0
        this.allowed++
        if (this.allowed >= this.most) this.stop()
      }
    }, AUTO_CHECK_MILLIS)
    this.#timer.unref()
  }

  /**
   * A thread that died leaves the threads in use, so that its replacement may take its place. Found
   * here, among the live threads piscina offers, not from its 'workerDestroy' event: by then the dead
   * thread's id reads -1 (Node clears threadId at exit), and a slot kept by a dead thread left every
   * task queued with no thread allowed to take it (a run with one thread hung at its first crash).
   */
  #forgetGone(workers: readonly BalancedWorker[]): void {
    const live = new Set(workers.map((worker) => worker.id))
    for (const id of this.used) {
      if (live.has(id)) continue
      this.used.delete(id)
      this.#readings.delete(id)
    }
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/** The worker entry piscina loads: .ts under tsx in development, .js after `npm run build`. */
function crewWorkerFile(): string {
  const ext = extname(new URL(import.meta.url).pathname) || '.js'
  return new URL(`../../workers/crew-worker${ext}`, import.meta.url).href
}

function moduleUrl(worker: string | URL): string {
  if (worker instanceof URL) return worker.href
  return worker.startsWith('file:') ? worker : pathToFileURL(resolve(worker)).href
}

/**
 * A pool of worker threads that each reconnect from the master Database's snapshot and run tasks.
 *
 * @example
 * await using crew = await db.crew({ worker: new URL('./worker.ts', import.meta.url), threads: 4 })
 * const result = await crew.run({ id: 1 })
 */
export class Crew implements AsyncDisposable {
  readonly #pool: CrewThreads
  readonly #channel: BroadcastChannel
  readonly #ready = new Set<number>()
  readonly #inFlight = new Set<Promise<unknown>>()
  readonly #taskTimeoutMillis: number | undefined
  readonly #closeTimeoutMillis: number
  #initError: TaskError | undefined
  #closing: Promise<void> | undefined
  /** Set just before the threads are stopped on purpose (close/destroy): those are not crashes. */
  #stopping = false
  #crashes = 0
  /** Tasks under a timeout, by id: the clock starts when the worker says the task started. */
  readonly #timed = new Map<number, TimedTask>()
  #nextTimeoutId = 0
  /** With `threads: 'auto'`: which threads take tasks, and when one more may. */
  readonly #auto: AutoThreads | undefined
  /** The connection arithmetic this crew runs under (with `threads: 'auto'`, for the most threads it may use). */
  readonly budget: BudgetPlan

  private constructor(pool: CrewThreads, channel: BroadcastChannel, budget: BudgetPlan, opts: CrewOptions, auto?: AutoThreads) {
    this.#pool = pool
    this.#channel = channel
    this.budget = budget
    this.#auto = auto
    auto?.start(
      () => pool.threads,
      (threadId) => this.#ready.has(threadId),
    )
    this.#taskTimeoutMillis = opts.taskTimeoutMillis
    this.#closeTimeoutMillis = opts.closeTimeoutMillis ?? DEFAULTS.closeTimeoutMillis
    channel.onmessage = (event: unknown) => this.#onMessage((event as { data: CrewMessage }).data)
    // A worker that dies outside a task (uncaught throw, process.exit) is replaced by piscina; its
    // task, if any, fails through run(). Without a listener the error would crash the main thread.
    pool.on('error', () => {})
    // A thread that went away while the crew was open crashed, exited or was stopped by a timeout.
    pool.on('workerDestroy', () => {
      if (!this.#stopping) this.#crashes++
    })
  }

  #onMessage(msg: CrewMessage): void {
    if (msg.type === 'ready') this.#ready.add(msg.threadId)
    if (msg.type === 'init-failed') this.#noteInitFailure(msg.error, msg.workerId)
    if (msg.type === 'started') this.#startClock(msg.timeoutId, msg.threadId)
  }

  /**
   * A task under taskTimeoutMillis has started in thread `threadId`: past the limit, that thread is
   * stopped (the only way to stop JavaScript that does not yield), and the server rolls back its work.
   */
  #startClock(timeoutId: number, threadId: number): void {
    const entry = this.#timed.get(timeoutId)
    if (!entry || entry.timer) return
    entry.timer = setTimeout(() => {
      entry.timedOut = true
      const thread = this.#pool.threads.find((t) => t.threadId === threadId)
      void thread?.terminate()
    }, this.#taskTimeoutMillis)
    entry.timer.unref()
  }

  /** Create a crew for `db` (use `db.crew(options)`). Computes the connection budget first. */
  static async create(db: Database, options: CrewOptions): Promise<Crew> {
    if (!options?.worker) throw new PgcrewError('INVALID_OPTION', 'crew({ worker }) needs the worker module: a path or URL of a file that exports default defineWorker(...)')
    // Connect first: the snapshot must name the profile and role this connection actually chose.
    if (!db.connected) await db.connect()
    const snapshot = db.snapshot()
    if (snapshot.functionHooks > 0) {
      throw new PgcrewError('INVALID_OPTION', 'an onConnect hook given as a function cannot travel to worker threads; pass it as a module path (db.onConnect("./hooks/search-path.ts"))')
    }
    if (options.inProcess && options.threads === 'auto') throw new PgcrewError('INVALID_OPTION', "inProcess runs the crew's one worker in this thread: it takes no threads: 'auto'; drop one of them")
    if (options.inProcess) {
      const refused =
        options.threads !== undefined && options.threads !== 1
          ? `threads: ${options.threads}`
          : options.taskTimeoutMillis !== undefined
            ? 'taskTimeoutMillis'
            : options.resourceLimits
              ? 'resourceLimits'
              : undefined
      if (refused) {
        throw new PgcrewError(
          'INVALID_OPTION',
          `inProcess runs the crew's one worker in this thread, which cannot take ${refused} (only a worker thread can be stopped mid-task or given heap limits); drop inProcess, or drop ${refused}`,
        )
      }
    }
    const auto = options.threads === 'auto'
    if (options.threads !== undefined && !auto && typeof options.threads !== 'number') {
      throw new PgcrewError('INVALID_OPTION', `threads must be a whole number ≥ 1 or 'auto', not ${inspect(options.threads)}`)
    }
    const threads = options.inProcess ? 1 : options.threads === undefined || options.threads === 'auto' ? availableParallelism() : options.threads
    requireWhole('threads', threads, 1)
    const perWorker = options.perWorkerConnections ?? (auto ? AUTO_PER_WORKER : DEFAULTS.perWorkerConnections)
    requireWhole('perWorkerConnections', perWorker, 1)
    if (options.taskTimeoutMillis !== undefined) requireWhole('taskTimeoutMillis', options.taskTimeoutMillis, 1)
    const budget = await computeBudget(db, {
      threads,
      perWorker,
      main: db.maxConnections,
      beside: options.besideConnections ?? 0,
      connectionBudget: options.connectionBudget,
      onOverBudget: options.onOverBudget ?? DEFAULTS.onOverBudget,
      threadsFirst: auto,
    })
    const channelName = `pgcrew-crew-${randomBytes(6).toString('hex')}`
    // Worker numbers run 1…threads in every run (thread ids depend on what the process started before).
    const workerNumbers = new Int32Array(new SharedArrayBuffer(4))
    const workerData: CrewWorkerData = {
      snapshot,
      workerModule: moduleUrl(options.worker),
      perWorkerConnections: budget.perWorker,
      retryWindowMillis: options.retryWindowMillis,
      applicationName: options.applicationName,
      channel: channelName,
      workerNumbers,
      host: options.host ?? machineFqdn(),
      lanes: options.sendCommitWithNext ?? true,
    }
    const autoThreads = auto ? new AutoThreads(budget.threads, budget.perWorker) : undefined
    const pool: CrewThreads = options.inProcess
      ? await inlineThreads(workerData)
      : new Piscina({
          filename: crewWorkerFile(),
          minThreads: budget.threads,
          maxThreads: budget.threads,
          workerData,
          // 'sync' parks an idle worker in Atomics.wait: its sockets stall and a killed backend goes unnoticed.
          atomics: 'async',
          concurrentTasksPerWorker: budget.perWorker,
          idleTimeout: 2 ** 31 - 1,
          ...(autoThreads ? { loadBalancer: autoThreads.balance as never } : {}),
          ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
        })
    const channel = new BroadcastChannel(channelName)
    channel.unref()
    return new Crew(pool, channel, budget, options, autoThreads)
  }

  #noteInitFailure(error: SerializedError, workerId: number): void {
    this.#initError ??= new TaskError({ ...error, code: 'WORKER_INIT_FAILED', transient: false, message: `worker init failed: ${error.message}` }, workerId)
  }

  /** The first worker init failure, if any (reported once; later tasks fail fast with it). */
  get initError(): TaskError | undefined {
    return this.#initError
  }

  /** Worker threads that died (crashed, exited or were stopped by a task timeout) and were replaced. */
  get crashes(): number {
    return this.#crashes
  }

  /** Worker threads taking tasks: the budget's, or with `threads: 'auto'` those allowed so far. */
  get threads(): number {
    return this.#auto?.allowed ?? this.budget.threads
  }

  /** Worker threads that took tasks at once: the budget's, or with `threads: 'auto'` the most in use so far (allowed is not taken: a run may end first). */
  get threadsTaken(): number {
    return this.#auto?.peak ?? this.budget.threads
  }

  /** Whether this crew chooses its threads as it goes (`threads: 'auto'`). */
  get autoThreads(): boolean {
    return this.#auto !== undefined
  }

  /** Send one envelope; resolves with the worker's outcome, never rejects. */
  async dispatch(envelope: TaskEnvelope): Promise<TaskOutcome> {
    const refused = this.#refusal()
    if (refused) return refused
    // The clock of a timed task starts in the worker, not here: a task waiting in the queue, or for a
    // replacement thread to start, has not used any of its time.
    const timeoutId = this.#taskTimeoutMillis ? this.#nextTimeoutId++ : undefined
    const timed: TimedTask | undefined = timeoutId !== undefined ? { timedOut: false } : undefined
    if (timed) this.#timed.set(timeoutId!, timed)
    const p = (this.#pool.run(timed ? { ...envelope, timeoutId } : envelope) as Promise<TaskOutcome>).catch((error: unknown): TaskOutcome => {
      if (timed?.timedOut) return { ok: false, error: { name: 'TaskError', code: 'TASK_TIMEOUT', message: `task timed out after ${this.#taskTimeoutMillis} ms`, transient: false }, workerId: -1 }
      return Crew.#crashed(error)
    })
    this.#inFlight.add(p)
    try {
      return this.#received(await p)
    } finally {
      this.#inFlight.delete(p)
      if (timed) {
        clearTimeout(timed.timer)
        this.#timed.delete(timeoutId!)
      }
    }
  }

  /**
   * Send several envelopes in one message (no task timeout: a timeout stops the whole thread, so
   * timed tasks go one by one through dispatch). One outcome per envelope, in order; never rejects.
   * A thread that dies fails every envelope of the batch with WORKER_CRASHED (transient): the ones
   * that had committed find their ledger row done when they are retried.
   */
  async dispatchBatch(envelopes: TaskEnvelope[]): Promise<TaskOutcome[]> {
    if (this.#taskTimeoutMillis || envelopes.length === 1) return Promise.all(envelopes.map((e) => this.dispatch(e)))
    const refused = this.#refusal()
    if (refused) return envelopes.map(() => refused)
    const p = (this.#pool.run({ mode: 'batch', tasks: envelopes } satisfies BatchEnvelope) as Promise<TaskOutcome[]>).catch((error: unknown): TaskOutcome[] => {
      const crashed = Crew.#crashed(error)
      return envelopes.map(() => crashed)
    })
    this.#inFlight.add(p)
    try {
      const outcomes = await p
      return outcomes.map((outcome) => this.#received(outcome))
    } finally {
      this.#inFlight.delete(p)
    }
  }

  /** Why nothing can be dispatched now (closing, or a worker's init failed), if so. */
  #refusal(): TaskOutcome | undefined {
    if (this.#closing) return { ok: false, error: { name: 'PgcrewError', code: 'CLOSED', message: 'the crew is closing', transient: false }, workerId: -1 }
    if (this.#initError) return { ok: false, error: { name: 'TaskError', code: 'WORKER_INIT_FAILED', message: this.#initError.message, transient: false }, workerId: -1 }
    return undefined
  }

  static #crashed(error: unknown): TaskOutcome {
    const message = `worker thread died: ${error instanceof Error ? error.message : inspect(error, { depth: 1, breakLength: Infinity })}`
    return { ok: false, error: { name: 'TaskError', code: 'WORKER_CRASHED', message, transient: true }, workerId: -1 }
  }

  /** Bookkeeping on an outcome from a worker: it is past its init; an init failure is worded once. */
  #received(outcome: TaskOutcome): TaskOutcome {
    // A worker that answered a task is past its init and will answer close() too. (Its 'ready'
    // comes on another channel and may arrive after this result.)
    if (outcome.threadId !== undefined) this.#ready.add(outcome.threadId)
    if (!outcome.ok && outcome.error.code === 'WORKER_INIT_FAILED') {
      this.#noteInitFailure(outcome.error, outcome.workerId)
      return { ok: false, error: { ...outcome.error, message: this.#initError!.message }, workerId: outcome.workerId }
    }
    return outcome
  }

  /** Run one task in a worker; rejects with a {@link TaskError} carrying the worker's error code. */
  async run<R = unknown>(task: unknown): Promise<R> {
    const outcome = await this.dispatch({ mode: 'plain', task, attempt: 1 })
    if (!outcome.ok) throw new TaskError(outcome.error, outcome.workerId)
    return outcome.value as R
  }

  /** Run every task, at most `concurrency` at once (default threads × perWorker); yields in completion order. */
  static #item<T, R>(task: T, outcome: TaskOutcome): { task: T; result?: R; error?: TaskError } {
    return outcome.ok ? { task, result: outcome.value as R } : { task, error: new TaskError(outcome.error, outcome.workerId) }
  }

  async *map<T, R = unknown>(tasks: Iterable<T> | AsyncIterable<T>, options: { concurrency?: number } = {}): AsyncGenerator<{ task: T; result?: R; error?: TaskError }> {
    const limit = options.concurrency ?? this.budget.threads * this.budget.perWorker
    const running = new Map<Promise<unknown>, Promise<{ key: Promise<unknown>; task: T; outcome: TaskOutcome }>>()
    for await (const task of tasks as AsyncIterable<T>) {
      const key = Promise.resolve()
      const p = this.dispatch({ mode: 'plain', task, attempt: 1 }).then((outcome) => ({ key, task, outcome }))
      running.set(key, p)
      if (running.size >= limit) {
        const done = await Promise.race(running.values())
        running.delete(done.key)
        yield Crew.#item<T, R>(done.task, done.outcome)
      }
    }
    while (running.size) {
      const done = await Promise.race(running.values())
      running.delete(done.key)
      yield Crew.#item<T, R>(done.task, done.outcome)
    }
  }

  /**
   * Stop taking tasks, let running ones finish, have every worker end its pool (rolling back anything
   * open), then stop the threads. piscina has no teardown hook, so a BroadcastChannel carries it.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight])
      // Only threads still alive can answer; a crashed or timed-out one is gone with its connections.
      const alive = new Set(this.#pool.threads.map((w) => w.threadId))
      const expected = new Set([...this.#ready].filter((id) => alive.has(id)))
      if (expected.size) {
        await new Promise<void>((resolveAll) => {
          const timer = setTimeout(resolveAll, this.#closeTimeoutMillis)
          this.#channel.onmessage = (event: unknown) => {
            const msg = (event as { data: CrewMessage }).data
            if (msg.type === 'closed') expected.delete(msg.threadId)
            if (expected.size === 0) {
              clearTimeout(timer)
              resolveAll()
            }
          }
          this.#channel.postMessage({ type: 'close' } satisfies CrewMessage)
        })
      }
      this.#channel.close()
      this.#stopping = true
      this.#auto?.stop()
      await this.#pool.destroy()
    })()
    return this.#closing
  }

  /** The forced path: terminate the threads now (the server rolls back their open transactions). */
  async destroy(): Promise<void> {
    this.#closing ??= Promise.resolve()
    this.#channel.close()
    this.#stopping = true
    this.#auto?.stop()
    await this.#pool.destroy()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
