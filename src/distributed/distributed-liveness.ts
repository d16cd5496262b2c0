// Which machines are alive, as PostgreSQL itself sees it: each machine's engine pool holds a session
// advisory lock named after its graphile-worker pool id, on a connection of its own. A machine that
// dies (SIGKILL, a lost network) loses its session and the lock with it; any other machine's sweeper
// then frees its jobs with graphile-worker's force_unlock_workers, in seconds rather than the
// engine's fixed 4 hours.
import type pg from 'pg'
import type { Database } from '../database/database.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'
import { withConnectionRetry, type ConnectionRetryOptions } from '../database/connection-retry.ts'
import { jobsView, type Engine } from './distributed-engine.ts'

/** The advisory lock a live engine pool holds: a bigint from its pool id. */
export function livenessKey(poolId: string): bigint {
  return hashKey(`pgcrew.engine:${poolId}`)
}

/**
 * The dedicated connection that carries this machine's liveness lock (and, in its application_name,
 * its connection claim). Lost, it reconnects and locks again; until then `gate` holds back the
 * engine's fetches, so no job is ever locked by this machine while its lock is missing.
 */
export class Liveness {
  readonly #pool: pg.Pool
  readonly #retry: ConnectionRetryOptions
  #client: pg.PoolClient | undefined
  #poolId: string | undefined
  #gate: Promise<void> = Promise.resolve()
  /** The key locked on the current connection, if any. */
  #heldKey: bigint | undefined
  #closed = false

  private constructor(pool: pg.Pool, retry: ConnectionRetryOptions) {
    this.#pool = pool
    this.#retry = retry
  }

  /** Connect (inside the budget check, so the claim in `applicationName` is visible before it ends). */
  static async open(db: Database, applicationName: string, retry: ConnectionRetryOptions): Promise<Liveness> {
    const live = new Liveness(await db.pgPool({ max: 1, applicationName }), retry)
    live.#client = await live.#connect()
    return live
  }

  async #connect(): Promise<pg.PoolClient> {
    const client = await this.#pool.connect()
    client.on('error', () => this.#lost(client))
    return client
  }

  /** Resolved while the lock is held (or before any pool id is known). */
  get gate(): Promise<void> {
    return this.#gate
  }

  /**
   * Take the lock for this pool id (giving up the one of the pool before it, whose jobs the sweepers
   * then free); the engine's fetches wait for it.
   */
  hold(poolId: string): Promise<void> {
    this.#poolId = poolId
    return this.#relock()
  }

  /** One lock attempt at a time on the one connection: a loss and a new pool id queue up behind each other. */
  #relock(): Promise<void> {
    this.#gate = this.#gate.catch(() => {}).then(() => this.#lock())
    this.#gate.catch(() => {})
    return this.#gate
  }

  async #lock(): Promise<void> {
    await withConnectionRetry(async () => {
      if (this.#closed) return
      const client = (this.#client ??= await this.#connect())
      try {
        if (this.#heldKey !== undefined) await client.query('SELECT pg_advisory_unlock_all()')
        this.#heldKey = undefined
        const key = livenessKey(this.#poolId!)
        await client.query('SELECT pg_advisory_lock($1::bigint)', [String(key)])
        this.#heldKey = key
      } catch (error) {
        // The connection's 'error' event may have come first (#lost): it is released once only, and
        // the lost connection's error is what the retry sees (not a TypeError that ends the retries).
        if (this.#client === client) {
          this.#client = undefined
          this.#heldKey = undefined
          client.release(true)
        }
        throw error
      }
    }, this.#retry)
  }

  #lost(client: pg.PoolClient): void {
    if (this.#client !== client) return
    this.#client = undefined
    this.#heldKey = undefined
    client.release(true)
    if (this.#closed || this.#poolId === undefined) return
    // The lock went with the session: fetch nothing until it is back.
    void this.#relock()
  }

  /** Give up the lock and the connection (after the engine has returned or finished its jobs). */
  async close(): Promise<void> {
    this.#closed = true
    this.#client?.release(true)
    this.#client = undefined
    await this.#pool.end().catch(() => {})
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
