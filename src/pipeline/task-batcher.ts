import type { Crew } from '../crew/crew.ts'
import type { TaskEnvelope, TaskOutcome } from '../crew/crew-protocol.ts'

/**
 * Gathers the envelopes dispatched in one turn of the event loop (or `maxBatch` of them) into one
 * message to a worker, so the thread hop and postMessage are paid per batch and not per task. Each
 * caller still gets its own outcome: to a retry loop this is `crew.dispatch` with the same contract.
 */
export class TaskBatcher {
  readonly #crew: Crew
  readonly #maxBatch: number
  #queue: Array<{ envelope: TaskEnvelope; resolve: (outcome: TaskOutcome) => void }> = []
  #scheduled = false

  constructor(crew: Crew, maxBatch: number) {
    this.#crew = crew
    this.#maxBatch = maxBatch
  }

  dispatch(envelope: TaskEnvelope): Promise<TaskOutcome> {
    if (this.#maxBatch <= 1) return this.#crew.dispatch(envelope)
    return new Promise((resolve) => {
      this.#queue.push({ envelope, resolve })
      if (this.#queue.length >= this.#maxBatch) this.#flush()
      else if (!this.#scheduled) {
        this.#scheduled = true
        // After the current turn: the tasks freed by one finished batch go out together.
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
    void this.#crew.dispatchBatch(batch.map((b) => b.envelope)).then((outcomes) => outcomes.forEach((outcome, i) => batch[i]!.resolve(outcome)))
  }
}
