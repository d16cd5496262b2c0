/**
 * A throughput that forgets the past exponentially (time constant `tauMillis`), so the ETA follows a
 * lasting change of pace within a minute or two but a burst of a few seconds barely moves it: users
 * saw the bar's ETA jump 1m40 → 2m45 → 1m15 within seconds when it came from the last 200 updates.
 *
 * Both the count and the time are decayed (Σ e^(−age/τ)·Δcount / Σ e^(−age/τ)·Δt), so early in a run,
 * before τ has passed, the figure is the plain average of the run so far rather than a ramp from zero.
 */
export class SmoothedRate {
  readonly #tauMillis: number
  readonly #minStepMillis: number
  #count = 0
  #at = 0
  #weightedCount = 0
  #weightedMillis = 0

  constructor(tauMillis = 60_000, minStepMillis = 200) {
    this.#tauMillis = tauMillis
    this.#minStepMillis = minStepMillis
  }

  /** Record that `count` (a running total) was reached at `atMillis` (since the run started). */
  observe(count: number, atMillis: number): void {
    const dt = atMillis - this.#at
    // Many updates within a few milliseconds say nothing about the pace; fold them into the next step.
    if (dt < this.#minStepMillis) return
    const decay = Math.exp(-dt / this.#tauMillis)
    this.#weightedCount = this.#weightedCount * decay + (count - this.#count)
    this.#weightedMillis = this.#weightedMillis * decay + dt
    this.#count = count
    this.#at = atMillis
  }

  /** Tasks per second (0 before the first step). */
  get perSecond(): number {
    return this.#weightedMillis > 0 ? (this.#weightedCount * 1000) / this.#weightedMillis : 0
  }

  /** Seconds to finish `remaining` tasks at the smoothed rate; undefined while there is no rate yet. */
  etaSeconds(remaining: number): number | undefined {
    const rate = this.perSecond
    return rate > 0 ? Math.max(0, remaining) / rate : undefined
  }
}

/** "45s", "2m45s", "3h07m": short enough for the bar. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '-'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}
