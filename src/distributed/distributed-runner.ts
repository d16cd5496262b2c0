// The engine runner of one machine, kept running. graphile-worker retries a few error codes only; a
// lost connection while it completes or fails a job (a server restart at the wrong instant) makes it
// give up its whole pool ("queue is in an inconsistent state"), and the jobs that pool had locked
// would wait 4 hours. So when a pool shuts down that this machine did not stop, another pool takes
// its place: this machine's liveness lock moves to the new pool's id, the sweepers (this machine's
// among them) free the old pool's jobs, and the ledger turns a job run twice into a skip.
import { EventEmitter } from 'node:events'
import { run, type Runner, type RunnerOptions } from 'graphile-worker'
import { withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import type { Engine } from './distributed-engine.ts'
import type { Liveness } from './distributed-liveness.ts'

/** How long stop() waits for a pool the engine gave up to finish its own shutdown. */
const RETIRED_WAIT_MILLIS = 10_000

export interface EngineRunner {
  /** The current pool's id: the name of this machine's liveness lock. */
  readonly poolId: string
  /** Stop fetching, return the jobs fetched ahead, wait for the running ones (of every pool this machine had). */
  stop(): Promise<void>
}

export interface EngineRunnerOptions {
  engine: Engine
  live: Liveness
  /** graphile-worker's options, but its pool and events (this module's own). */
  run: Omit<RunnerOptions, 'pgPool' | 'events'>
  retry: ConnectionRetryOptions
  /** A pool was given up and another took its place. */
  onReplaced: (oldPoolId: string, poolId: string, reason: string) => void
  /** No new pool could be started (the server stayed away for the whole retry window). */
  onFatal: (error: unknown) => void
}

/** Start the runner; its pool holds the liveness lock before this resolves. */
export async function startEngineRunner(o: EngineRunnerOptions): Promise<EngineRunner> {
  let ending = false
  let current: { runner: Runner; poolId: string } | undefined
  const retired: Runner[] = []
  let replacing: Promise<void> | undefined

  const start = async (): Promise<{ runner: Runner; poolId: string }> => {
    const events = new EventEmitter()
    let poolId = ''
    let held: Promise<void> | undefined
    events.on('pool:create', ({ workerPool }: { workerPool: { id: string } }) => {
      poolId = workerPool.id
      held = o.live.hold(poolId)
      held.catch(() => {})
    })
    events.on('pool:gracefulShutdown', ({ workerPool, message }: { workerPool: { id: string }; message: string }) => {
      if (!ending && workerPool.id === current?.poolId) replace(message)
    })
    const runner = await withConnectionRetry(() => run({ ...o.run, pgPool: o.engine.pool, events: events as never }), o.retry)
    await held
    return { runner, poolId }
  }

  const replace = (reason: string): void => {
    if (replacing || !current) return
    const old = current
    retired.push(old.runner)
    replacing = start().then(
      (next) => {
        replacing = undefined
        current = next
        if (!ending) o.onReplaced(old.poolId, next.poolId, reason)
      },
      (error: unknown) => {
        replacing = undefined
        o.onFatal(error)
      },
    )
  }

  current = await start()
  return {
    get poolId() {
      return current!.poolId
    },
    async stop() {
      ending = true
      // A pool starting now is stopped with the rest.
      await replacing
      const settle = async (runner: Runner): Promise<void> => {
        await runner.stop().catch(() => {})
        await runner.promise.catch(() => {})
      }
      let timer: NodeJS.Timeout | undefined
      const bounded = new Promise<void>((resolve) => (timer = setTimeout(resolve, RETIRED_WAIT_MILLIS)))
      await Promise.all([settle(current!.runner), Promise.race([Promise.all(retired.map(settle)), bounded])])
      clearTimeout(timer)
    },
  }
}
