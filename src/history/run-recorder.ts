// Records a run in the record store while it goes on: the run's session and its start facts, a
// session-level advisory lock held for the whole run on a connection of its own (counted in the crew's
// connection budget; PostgreSQL itself frees it when the process dies: that is how the next
// `pgcrew status` tells a crashed run from a running one), the samples, failure and incident events,
// and the end. Nothing here may break the run: a store that cannot be written is a note in the summary.
import { machineFqdn } from '../connect/profiles.ts'
import type { Database } from '../database/database.ts'
import type { RunObserver } from '../pipeline/pipeline.ts'
import { openStore, type Store } from '../store/store.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'
import { qname } from '../toolkit/quote.ts'
import { RETRY_DEFAULTS, withConnectionRetry } from '../database/connection-retry.ts'
import { newLockKey, runSessionName, statusOf, type RunEnded, type RunSlowest, type RunStarted } from './run-record.ts'
import { RunLiveness } from './run-liveness.ts'
export { HISTORY_CONNECTIONS } from './run-liveness.ts'
import { RunSampler } from './run-samples.ts'
import { SlowestTasks } from './slowest-tasks.ts'

/** Options of the run history; every field is optional. Defaults: {@link HISTORY_DEFAULTS}. */
export interface HistoryOptions {
  /** Schema of the record store the runs go into. Default `pgcrew`. */
  schema?: string
  /** How often the run is sampled at first. Default 1000 (once a second). */
  sampleMillis?: number
  /** Most samples kept per run: past it every other one goes and the interval doubles. Default 3600. */
  maxSamples?: number
  /** Most failure events per run (the ledger keeps every failure; the events show when they came). Default 1000. */
  failureEvents?: number
  /** How many of the slowest tasks are kept (in memory, written with the samples and the end). Default 20. */
  slowestTasks?: number
}

export const HISTORY_DEFAULTS = Object.freeze({ schema: 'pgcrew', sampleMillis: 1000, maxSamples: 3600, failureEvents: 1000, slowestTasks: 20 })

/** A write of the history that must not be lost to an outage: retried for as long as a task would be. */
const patiently = <T>(fn: () => Promise<T>): Promise<T> => withConnectionRetry(fn, { windowMillis: RETRY_DEFAULTS.windowMillis })

/** The index a run's samples are read by (the store's own index is by series and time, across sessions). */
async function ensureHistoryIndex(store: Store): Promise<void> {
  await store.db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [hashKey(`pgcrew.history:${store.schema}`).toString()])
    await tx.query(`CREATE INDEX IF NOT EXISTS readings_session_at ON ${qname(store.schema, 'readings')} (session_id, at)`)
  })
}

/** The observer that records one run of `pipeline` (runPipeline creates it unless `history: false`). */
export function runHistory(db: Database, run: { pipeline: string; ledger: string; total: number | undefined }, options: HistoryOptions = {}): RunObserver & { readonly runId?: number } {
  const o = { ...HISTORY_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) }
  let store: Store | undefined
  let lock: RunLiveness | undefined
  let sampler: RunSampler | undefined
  let session: number | undefined
  let failureEvents = 0
  let events: Promise<unknown> = Promise.resolve()
  const slowest = new SlowestTasks(o.slowestTasks)
  let slowestMessage: number | undefined
  let slowestWrites: Promise<void> = Promise.resolve()
  // With every sample, so a run that crashes still has the slowest tasks of its last second.
  const writeSlowest = (): Promise<void> => {
    if (!store || session === undefined || !slowest.changed) return slowestWrites
    const s = store
    const id = session
    const message: RunSlowest = { kind: 'slowest', tasks: slowest.take() }
    slowestWrites = slowestWrites.then(async () => {
      try {
        if (slowestMessage === undefined) slowestMessage = (await s.session(id).queue(message)).id
        else await s.db.query(`UPDATE ${qname(s.schema, 'session_messages')} SET message = $2::jsonb WHERE id = $1`, [slowestMessage, JSON.stringify(message)])
      } catch {
        // Lost to an outage: the next sample writes the list again (it is whole each time).
        slowest.touch()
      }
    })
    return slowestWrites
  }
  // An event keeps the time it happened, and waits out an outage (the one it may be about: "server
  // unreachable" is logged while the server is away), one after another in order.
  const event = (description: string, severity: 'info' | 'warning' | 'error', data: unknown): void => {
    if (!store || session === undefined) return
    const s = store
    const id = session
    const at = new Date()
    const insert = () =>
      s.db.query(`INSERT INTO ${qname(s.schema, 'events')} (at, severity, description, data, session_id) VALUES ($1, $2, $3, $4::jsonb, $5)`, [at, severity, description, JSON.stringify(data), id])
    events = events.then(() => patiently(insert).catch(() => {}))
  }

  const observer: RunObserver & { runId?: number } = {
    async started({ threads, connections, budget, live }) {
      try {
        store = await openStore(db, { schema: o.schema })
        await ensureHistoryIndex(store)
        const key = newLockKey()
        // Taken before the session exists: a session whose lock is free is a run whose process is gone.
        lock = await RunLiveness.hold(db, key)
        const who = (await db.query<{ role: string; database: string }>('SELECT current_user AS role, current_database() AS database')).rows[0]!
        // The facts follow the session at once: until they land, a reader sees the run with no host or pid yet.
        session = await store.startSession({ name: runSessionName(key, run.pipeline) })
        const started: RunStarted = {
          kind: 'started',
          pipeline: run.pipeline,
          ledger: run.ledger,
          host: machineFqdn(),
          pid: process.pid,
          role: who.role,
          database: who.database,
          threads,
          connections,
          budget,
          total: run.total ?? null,
          lockKey: key.toString(),
        }
        await store.session(session).queue(started)
        observer.runId = session
        sampler = new RunSampler(store, session, live, { intervalMillis: o.sampleMillis, maxSamples: o.maxSamples })
        sampler.onReachability = (unreachable, l) =>
          event(unreachable ? 'server unreachable: tasks wait and retry' : 'server reachable again', unreachable ? 'warning' : 'info', {
            kind: unreachable ? 'unreachable' : 'reachable',
            done: l.done,
            retried: l.retried,
          })
        sampler.onSampled = writeSlowest
        sampler.start()
        return { runId: session }
      } catch (error) {
        await lock?.close()
        lock = undefined
        session = undefined
        observer.runId = undefined
        return { note: `the run history is not recorded: ${error instanceof Error ? error.message : String(error)}` }
      }
    },
    finishedTask(key, millis, workerId) {
      slowest.add(key, millis, workerId)
    },
    failed(failure) {
      if (failureEvents++ >= o.failureEvents) return
      event(`task ${failure.key} failed after ${failure.attempts} attempt(s): ${failure.code ? `[${failure.code}] ` : ''}${failure.message}`, 'error', {
        kind: 'failure',
        key: failure.key,
        attempts: failure.attempts,
        code: failure.code ?? null,
        worker: failure.workerId,
      })
    },
    async finished({ summary, error }) {
      if (!store || session === undefined) return
      try {
        await sampler?.stop()
        await writeSlowest()
        if (summary?.stopReason) event(summary.stopReason, 'error', { kind: 'stopped' })
        if (failureEvents > o.failureEvents) event(`${failureEvents - o.failureEvents} more failures are not logged as events (the ledger has them all)`, 'warning', { kind: 'failures-not-logged' })
        await events
        const ended: RunEnded = {
          kind: 'ended',
          status: summary ? statusOf(summary) : 'failed',
          summary: summary ?? null,
          reason: summary?.stopReason ?? (error ? (error instanceof Error ? error.message : String(error)) : null),
        }
        const s = store
        const id = session
        await patiently(() => s.session(id).queue(ended))
        await patiently(() => s.stopSession(id))
      } finally {
        // Released only after the end is written: a free lock with no end means the process died.
        await lock?.close()
      }
    },
  }
  return observer
}
