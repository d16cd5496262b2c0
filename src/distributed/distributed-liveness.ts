// Which machines are alive, as PostgreSQL itself sees it: each machine's engine pool holds a session
// advisory lock named after its graphile-worker pool id, on a connection of its own. A machine that
// dies (SIGKILL, a lost network) loses its session and the lock with it; any other machine's sweeper
// then frees its jobs with graphile-worker's force_unlock_workers, in seconds rather than the
// engine's fixed 4 hours.
import type { Database } from '../database/database.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'
import type { ConnectionRetryOptions } from '../database/connection-retry.ts'
import { SessionLock, type SessionLockOptions } from '../database/session-lock.ts'
import { jobsView, type Engine } from './distributed-engine.ts'

/** The advisory lock a live engine pool holds: a bigint from its pool id. */
export function livenessKey(poolId: string): bigint {
  return hashKey(`pgcrew.engine:${poolId}`)
}

/**
 * The dedicated connection that carries this machine's liveness lock (and, in its application_name,
 * its connection claim). Lost, it reconnects and locks again for as long as the machine runs; until
 * then `gate` holds back the engine's fetches, so no job is ever locked by this machine while its
 * lock is missing.
 */
export class Liveness {
  readonly #lock: SessionLock

  private constructor(lock: SessionLock) {
    this.#lock = lock
  }

  /** Connect (inside the budget check, so the claim in `applicationName` is visible before it ends). */
  static async open(db: Database, applicationName: string, retry: ConnectionRetryOptions, events: Pick<SessionLockOptions, 'onLost' | 'onBack'> = {}): Promise<Liveness> {
    return new Liveness(await SessionLock.open(db, { applicationName, retry, ...events }))
  }

  /** Resolved while the lock is held (or before any pool id is known); rejected only once it cannot be had. */
  get gate(): Promise<void> {
    return this.#lock.gate
  }

  /**
   * Take the lock for this pool id (giving up the one of the pool before it, whose jobs the sweepers
   * then free); the engine's fetches wait for it.
   */
  hold(poolId: string): Promise<void> {
    return this.#lock.hold(livenessKey(poolId))
  }

  /** Give up the lock and the connection (after the engine has returned or finished its jobs). */
  close(): Promise<void> {
    return this.#lock.close()
  }
}

/**
 * The pools seen without their lock, and since when. A server restart takes every machine's lock at
 * once, and each takes it again a moment after the server is back: a pool is called dead only once
 * its lock has stayed missing for `deadAfterMillis`, so the first machine back does not free the
 * jobs of all the others while they still run them.
 */
export interface DeadPoolWatch {
  readonly deadAfterMillis: number
  readonly missingSince: Map<string, number>
}

/**
 * Free the jobs of engine pools whose liveness lock is gone (for `deadAfterMillis`): returns the
 * pool ids and how many jobs. A pool that is alive always holds its lock before it locks a job
 * (Liveness.gate), so a locked job without a held lock belongs to a machine that died, lost its
 * session for good, or replaced a pool the engine gave up.
 */
export async function sweepDeadPools(db: Database, engine: Engine, watch: DeadPoolWatch): Promise<{ poolIds: string[]; jobs: number }> {
  const { rows } = await db.query<{ locked_by: string; n: number }>(`SELECT locked_by, count(*)::int AS n FROM ${jobsView(engine.schema)} WHERE locked_by IS NOT NULL GROUP BY locked_by`)
  const keys = rows.map((r) => String(livenessKey(r.locked_by)))
  // A single-bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32), objsubid 1.
  const { rows: held } =
    rows.length === 0
      ? { rows: [] }
      : await db.query<{ k: string }>(
          `SELECT k::text FROM unnest($1::bigint[]) AS k
            WHERE EXISTS (SELECT 1 FROM pg_locks l
                           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                             AND l.classid::bigint = (k >> 32) & 4294967295 AND l.objid::bigint = k & 4294967295)`,
          [keys],
        )
  const alive = new Set(held.map((r) => r.k))
  const missing = rows.filter((_, i) => !alive.has(keys[i]!))
  const now = Date.now()
  const stillMissing = new Set(missing.map((r) => r.locked_by))
  for (const id of watch.missingSince.keys()) if (!stillMissing.has(id)) watch.missingSince.delete(id)
  for (const id of stillMissing) if (!watch.missingSince.has(id)) watch.missingSince.set(id, now)
  const dead = missing.filter((r) => now - watch.missingSince.get(r.locked_by)! >= watch.deadAfterMillis)
  if (dead.length === 0) return { poolIds: [], jobs: 0 }
  const poolIds = dead.map((r) => r.locked_by)
  await engine.utils.forceUnlockWorkers(poolIds)
  for (const id of poolIds) watch.missingSince.delete(id)
  const jobs = dead.reduce((sum, r) => sum + r.n, 0)
  // Freed jobs are not new rows, so nothing told the other machines: wake them as an insert would.
  await db.query("SELECT pg_notify('jobs:insert', $1)", [JSON.stringify({ count: jobs })])
  return { poolIds, jobs }
}
