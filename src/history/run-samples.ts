// A run's progress, sampled into the store's readings once a second and thinned as the run goes on:
// when a run reaches maxSamples samples every other one is removed and the interval doubles, so a
// 10-hour run keeps between maxSamples / 2 and maxSamples of them, evenly spread over all of it.
import type { LiveRun } from '../pipeline/pipeline.ts'
import type { Store } from '../store/store.ts'

/** One reading row as the store's readings table holds it. */
interface ReadingRow extends Record<string, unknown> {
  series: string
  value: number
  at: Date
  session_id: number
}

/** The series a run writes; per-worker ones are `worker.<n>.done` and `worker.<n>.failed`. */
export const RUN_SERIES = ['run.done', 'run.failed', 'run.skipped', 'run.retried', 'run.rate', 'run.connections', 'run.unreachable'] as const

export class RunSampler {
  readonly #store: Store
  readonly #session: number
  readonly #live: () => LiveRun
  readonly #maxSamples: number
  #intervalMillis: number
  #timer: NodeJS.Timeout | undefined
  /** The times of the samples kept, oldest first (what thinning removes every other one of). */
  readonly #times: Date[] = []
  #last: { at: number; processed: number } | undefined
  #writing: Promise<void> = Promise.resolve()
  #failures = 0
  /** Called when the server becomes unreachable (true) or reachable again (false). */
  onReachability?: (unreachable: boolean, live: LiveRun) => void
  /** Called after each sample is queued (the run history writes its slowest tasks with it). */
  onSampled?: () => unknown
  #unreachable = false

  constructor(store: Store, session: number, live: () => LiveRun, options: { intervalMillis: number; maxSamples: number }) {
    this.#store = store
    this.#session = session
    this.#live = live
    this.#intervalMillis = options.intervalMillis
    this.#maxSamples = Math.max(4, options.maxSamples)
  }

  /** The interval between samples now (it doubles each time the samples are thinned). */
  get intervalMillis(): number {
    return this.#intervalMillis
  }

  /** Samples kept so far. */
  get count(): number {
    return this.#times.length
  }

  start(): void {
    void this.sample()
    this.#schedule()
  }

  #schedule(): void {
    clearInterval(this.#timer)
    this.#timer = setInterval(() => void this.sample(), this.#intervalMillis)
    this.#timer.unref()
  }

  /** Take one sample now (the last one at the end of a run, too); writes are queued one after another. */
  sample(): Promise<void> {
    const live = this.#live()
    const now = Date.now()
    const processed = live.done + live.failed
    // The rate over the interval since the last sample: what the throughput chart shows.
    const rate = this.#last && now > this.#last.at ? ((processed - this.#last.processed) * 1000) / (now - this.#last.at) : 0
    this.#last = { at: now, processed }
    const unreachable = live.unreachableMillisLeft !== undefined
    if (unreachable !== this.#unreachable) {
      this.#unreachable = unreachable
      this.onReachability?.(unreachable, live)
    }
    const at = new Date(now)
    const values: Array<[string, number]> = [
      ['run.done', live.done],
      ['run.failed', live.failed],
      ['run.skipped', live.skipped],
      ['run.retried', live.retried],
      ['run.rate', rate],
      ['run.connections', live.connectionsInUse],
      ['run.unreachable', unreachable ? 1 : 0],
    ]
    for (const [worker, n] of Object.entries(live.perWorker)) values.push([`worker.${worker}.done`, n])
    for (const [worker, n] of Object.entries(live.failedPerWorker)) values.push([`worker.${worker}.failed`, n])
    const rows: ReadingRow[] = values.map(([series, value]) => ({ series, value, at, session_id: this.#session }))
    this.#times.push(at)
    const thin = this.#times.length >= this.#maxSamples ? this.#thin() : undefined
    this.#writing = this.#writing.then(async () => {
      try {
        await this.#readings().addMany(rows)
        if (thin) await this.#readings().remove({ session_id: this.#session, at: thin })
      } catch {
        // A sample lost to a server outage is a gap in the charts, never a reason to stop the run.
        this.#failures++
      }
    })
    this.onSampled?.()
    return this.#writing
  }

  /** Drop every other sample but the first and the last, double the interval; returns the times to remove. */
  #thin(): Date[] {
    const removed: Date[] = []
    const kept: Date[] = []
    this.#times.forEach((t, i) => (i % 2 === 1 && i !== this.#times.length - 1 ? removed : kept).push(t))
    this.#times.splice(0, this.#times.length, ...kept)
    this.#intervalMillis *= 2
    this.#schedule()
    return removed
  }

  #readings() {
    return this.#store.table<ReadingRow>(`${this.#store.schema}.readings`)
  }

  /** Stop sampling after one last sample, and wait for every write. Resolves to how many writes failed. */
  async stop(): Promise<number> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.sample()
    return this.#failures
  }
}
