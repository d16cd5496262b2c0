import type { Crew } from '../crew/crew.ts'
import type { TaskEnvelope, TaskOutcome } from '../crew/crew-protocol.ts'

/** A message sized by time holds about this much of its tasks' measured time per connection of the worker… */
export const WORK_PER_CONNECTION_MILLIS = 50
/** …and at most this many tasks per connection (past it the thread hop is already paid for). */
export const MOST_PER_CONNECTION = 16

/** What the tasks' running average takes from each new duration. */
const WEIGHT = 1 / 16

/**
 * Gathers the envelopes dispatched in one turn of the event loop (or a message's worth of them) into
 * one message to a worker, so the thread hop and postMessage are paid per message and not per task.
 * Each caller still gets its own outcome: to a retry loop this is `crew.dispatch` with the same contract.
 *
 * The size of a message is fixed when the caller says so (`tasksPerMessage`); otherwise it follows the
 * tasks' measured time: one task per connection of the worker until the first outcomes arrive, then
 * about {@link WORK_PER_CONNECTION_MILLIS} of work per connection, between 1 and
 * {@link MOST_PER_CONNECTION} tasks. Light tasks go 16 per connection (the per-message work of piscina
 * and the structured clone are paid once for them), a task of a second goes alone: a message never
 * keeps much work on one thread while another waits, at the end of a run or after a Ctrl-C.
 */
export class TaskBatcher {
  readonly #crew: Crew
  readonly #fixed: number | undefined
  readonly #perWorker: number
  readonly #threads: () => number
  /** Messages sent and not yet answered. */
  #inFlight = 0
  /** Running average of the tasks' time in the worker (ms), once an outcome has said it. */
  #averageMillis: number | undefined
  #queue: Array<{ envelope: TaskEnvelope; resolve: (outcome: TaskOutcome) => void }> = []
  #scheduled = false
  readonly #learn = (outcome: TaskOutcome): TaskOutcome => {
    // A skip (its key found done by the claim) did none of the task's work: it says nothing of how long tasks take.
    if (outcome.ok && !outcome.skipped && outcome.millis !== undefined) {
      const average = this.#averageMillis
      this.#averageMillis = average === undefined ? outcome.millis : average + (outcome.millis - average) * WEIGHT
    }
    return outcome
  }

  /** `threads` may change during a run (a crew with `threads: 'auto'`): a function is asked each time. */
  constructor(crew: Crew, size: { tasksPerMessage?: number; perWorker: number; threads: number | (() => number) }) {
    this.#crew = crew
    this.#fixed = size.tasksPerMessage
    this.#perWorker = Math.max(1, size.perWorker)
    const threads = size.threads
    this.#threads = typeof threads === 'function' ? () => Math.max(1, threads()) : () => Math.max(1, threads)
  }

  /**
   * Whether enough is in flight: two messages per thread (one runs while the other's outcomes travel
   * back), more when a message holds fewer tasks than a worker has connections. Counted in messages,
   * not tasks: when tasks turn slow, a message of many fast-sized tasks still running on one thread
   * must not keep the next, smaller messages from the threads that are free.
   */
  get full(): boolean {
    const perThread = 2 * Math.max(1, Math.ceil(this.#perWorker / this.size))
    return this.#inFlight >= this.#threads() * perThread
  }

  /**
   * The most tasks a run keeps out, waiting for a retry included: the window at its largest message
   * size. Messages are what `full` counts, but a task sleeping before its retry is in no message, and
   * without this bound a run with many retries would keep handing out new tasks beside them.
   */
  get mostTasks(): number {
    return this.#threads() * 2 * Math.max(this.#perWorker, this.#fixed ?? this.#perWorker * MOST_PER_CONNECTION)
  }

  /** Tasks per message now. */
  get size(): number {
    if (this.#fixed !== undefined) return this.#fixed
    const average = this.#averageMillis
    if (average === undefined) return this.#perWorker
    const perConnection = Math.floor(WORK_PER_CONNECTION_MILLIS / Math.max(average, 0.01))
    return this.#perWorker * Math.max(1, Math.min(MOST_PER_CONNECTION, perConnection))
  }

  dispatch(envelope: TaskEnvelope): Promise<TaskOutcome> {
    const size = this.size
    if (size <= 1) {
      this.#inFlight++
      return this.#crew.dispatch(envelope).then((outcome) => {
        this.#inFlight--
        return this.#learn(outcome)
      })
    }
    return new Promise((resolve) => {
      this.#queue.push({ envelope, resolve })
      if (this.#queue.length >= size) this.#flush()
      else if (!this.#scheduled) {
        this.#scheduled = true
        // After the current turn: the tasks freed by one finished message go out together.
        setImmediate(() => {
          this.#scheduled = false
          this.#flush()
        })
      }
    })
  }

  #flush(): void {
    const batch = this.#queue
    if (batch.length === 0) return
    this.#queue = []
    this.#inFlight++
    void this.#crew.dispatchBatch(batch.map((b) => b.envelope)).then((outcomes) => {
      // Counted out before the outcomes wake the run's loop, which asks `full` again.
      this.#inFlight--
      outcomes.forEach((outcome, i) => batch[i]!.resolve(this.#learn(outcome)))
    })
  }
}
