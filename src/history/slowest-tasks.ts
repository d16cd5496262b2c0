// The slowest tasks of a run: the N longest durations seen so far, kept in a min-heap of N entries, so
// a run of a million tasks holds 20 of them, not a million, and a task faster than the 20th slowest
// (nearly every task, once the heap is full) costs one comparison.

/** One of a run's slowest tasks. */
export interface SlowTask {
  key: string
  /** How long its successful attempt took in the worker: its transaction, claim and commit included. */
  millis: number
  /** The worker that ran it. */
  worker: number
}

export class SlowestTasks {
  readonly #size: number
  /** A min-heap by millis: the root is the fastest of the slowest, the one a slower task replaces. */
  readonly #heap: SlowTask[] = []
  #changed = false

  constructor(size: number) {
    this.#size = Math.max(0, Math.floor(size))
  }

  /** A task finished in `millis`: kept when it is among the slowest so far. */
  add(key: string, millis: number, worker: number): void {
    const heap = this.#heap
    if (heap.length === this.#size) {
      if (this.#size === 0 || millis <= heap[0]!.millis) return
      heap[0] = { key, millis, worker }
      this.#down(0)
    } else {
      heap.push({ key, millis, worker })
      this.#up(heap.length - 1)
    }
    this.#changed = true
  }

  /** Whether the list changed since the last `take()` (what decides if it is written again). */
  get changed(): boolean {
    return this.#changed
  }

  /** Count the list as changed again (its write failed). */
  touch(): void {
    this.#changed = true
  }

  /** The slowest first, and the list counts as written. */
  take(): SlowTask[] {
    this.#changed = false
    return this.list()
  }

  /** The slowest first. */
  list(): SlowTask[] {
    return [...this.#heap].sort((a, b) => b.millis - a.millis || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  #up(i: number): void {
    const heap = this.#heap
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent]!.millis <= heap[i]!.millis) return
      ;[heap[parent], heap[i]] = [heap[i]!, heap[parent]!]
      i = parent
    }
  }

  #down(i: number): void {
    const heap = this.#heap
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let least = i
      if (l < heap.length && heap[l]!.millis < heap[least]!.millis) least = l
      if (r < heap.length && heap[r]!.millis < heap[least]!.millis) least = r
      if (least === i) return
      ;[heap[least], heap[i]] = [heap[i]!, heap[least]!]
      i = least
    }
  }
}
