// One retry mechanism for the pipeline's tasks, its own queries and a worker's start: a lost
// connection (server gone, restarting, full) is retried for a time window; other transient errors
// (serialization failure, deadlock) a number of times.
import { backoffMillis } from './retry-backoff.ts'
import { isConnectionLost } from '../errors/database-error.ts'

/** How a unit of work is retried; every field is optional, defaults in {@link RETRY_DEFAULTS}. */
export interface RetryPolicy {
  /** How long connection-level errors are retried, counted from the first of an unbroken run of them. */
  windowMillis?: number
  /** Retries after other transient errors (serialization failure, deadlock, a worker that died). */
  retries?: number
  /** The first wait; it doubles with each retry. */
  firstDelayMillis?: number
  /** The longest wait between two tries (before jitter), so a server that is back is seen soon. */
  maxDelayMillis?: number
}

export const RETRY_DEFAULTS = Object.freeze({ windowMillis: 60_000, retries: 3, firstDelayMillis: 100, maxDelayMillis: 2_000 })

/** The kind of failure a retry decision is about. */
export type FailureKind = 'connection' | 'transient'

/**
 * The retry state of one unit of work. `next(kind)` gives the wait before the next try, or undefined
 * when it is time to give up: the window has run out (connection) or the retries are used (transient).
 */
export class RetryClock {
  readonly #policy: Required<RetryPolicy>
  #lostSince: number | undefined
  #lostTries = 0
  #transientTries = 0

  constructor(policy: RetryPolicy = {}) {
    this.#policy = {
      windowMillis: policy.windowMillis ?? RETRY_DEFAULTS.windowMillis,
      retries: policy.retries ?? RETRY_DEFAULTS.retries,
      firstDelayMillis: policy.firstDelayMillis ?? RETRY_DEFAULTS.firstDelayMillis,
      maxDelayMillis: policy.maxDelayMillis ?? RETRY_DEFAULTS.maxDelayMillis,
    }
  }

  next(kind: FailureKind, now = Date.now()): number | undefined {
    const p = this.#policy
    if (kind === 'connection') {
      this.#lostSince ??= now
      const left = this.remainingMillis(now)!
      if (left <= 0) return undefined
      return Math.min(left, backoffMillis(p.firstDelayMillis, ++this.#lostTries, p.maxDelayMillis))
    }
    // The server answered (with a deadlock, say): an outage before this one is over.
    this.#lostSince = undefined
    this.#lostTries = 0
    if (++this.#transientTries > p.retries) return undefined
    return backoffMillis(p.firstDelayMillis, this.#transientTries, p.maxDelayMillis)
  }

  /** What is left of the window while connections fail; undefined when they do not. */
  remainingMillis(now = Date.now()): number | undefined {
    return this.#lostSince === undefined ? undefined : this.#lostSince + this.#policy.windowMillis - now
  }
}

/** Wait `ms`, or less if `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Options of {@link withConnectionRetry}; all optional. */
export interface ConnectionRetryOptions extends Pick<RetryPolicy, 'windowMillis' | 'firstDelayMillis' | 'maxDelayMillis'> {
  /** Stop retrying (the last error is thrown) once this aborts. */
  signal?: AbortSignal
  /** Told before each wait: the error, the wait, and what is left of the window. */
  onWait?: (wait: { error: unknown; delayMillis: number; remainingMillis: number }) => void
}

/**
 * Run `fn`, and run it again while it fails because the connection was lost or could not be made
 * ({@link isConnectionLost}), for up to `windowMillis` (default 60 s) with capped exponential backoff.
 * Any other error, an aborted signal or the end of the window throws the error as it is.
 *
 * @example
 * const done = await withConnectionRetry(() => doneKeys(db, ledger, name, keys), { signal })
 */
export async function withConnectionRetry<T>(fn: () => Promise<T>, options: ConnectionRetryOptions = {}): Promise<T> {
  const clock = new RetryClock(options)
  for (;;) {
    try {
      return await fn()
    } catch (error) {
      if (!isConnectionLost(error) || options.signal?.aborted) throw error
      const delayMillis = clock.next('connection')
      if (delayMillis === undefined) throw error
      options.onWait?.({ error, delayMillis, remainingMillis: clock.remainingMillis()! })
      await sleep(delayMillis, options.signal)
      if (options.signal?.aborted) throw error
    }
  }
}
