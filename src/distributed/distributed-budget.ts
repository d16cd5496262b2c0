// The connection budget of one machine of a distributed run. pg_stat_database counts the sessions
// that are open now; machines that start together would each see the same free slots and take them
// all. So each machine decides under one advisory lock, and publishes what it will open (its claim)
// in the application_name of its liveness session before the lock is released; the next machine
// subtracts the claims not yet opened (a machine's sessions are all named `pgcrew <tag> …`, and
// application_name is one of the columns pg_stat_activity shows every role).
import type { Database } from '../database/database.ts'
import { planBudget, type BudgetPlan } from '../crew/crew-budget.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { hashKey } from '../toolkit/advisory-lock.ts'
import { TAGGED_SESSION } from './distributed-engine.ts'

export interface MachineBudgetRequest {
  threads: number
  perWorker: number
  /** The engine's pool plus the liveness connection. */
  engine: number
  connectionBudget?: number
  onOverBudget: 'clamp' | 'refuse'
  tag: string
}

/** The liveness session's name, carrying the claim: `pgcrew <tag> live claims=<n>`. */
export function claimName(tag: string, claim: number): string {
  return `pgcrew ${tag} live claims=${claim}`
}

/**
 * Plan this machine's connections (main pool + engine + liveness + threads × perWorker) and stake
 * the claim: `open(name)` must connect the liveness session under that name before it returns.
 * The plan's `main` includes the engine and liveness connections.
 */
export async function machineBudget<T>(db: Database, req: MachineBudgetRequest, open: (applicationName: string) => Promise<T>): Promise<{ plan: BudgetPlan; opened: T }> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [String(hashKey('pgcrew.distributed.budget'))])
    // Read after the lock: a transaction keeps the first pg_stat_activity it reads.
    const { rows } = await tx.query<{ max: number; reserved: number; used: number; claimed: number; tagged: number }>(
      `SELECT current_setting('max_connections')::int AS max,
              current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
              (SELECT coalesce(sum(numbackends), 0)::int FROM pg_stat_database) AS used,
              (SELECT coalesce(sum(substring(application_name FROM ' claims=([0-9]+)$')::int), 0)::int FROM pg_stat_activity
                WHERE application_name ~ ($1 || 'live claims=[0-9]+$')) AS claimed,
              (SELECT count(*)::int FROM pg_stat_activity WHERE application_name ~ $1) AS tagged`,
      [TAGGED_SESSION],
    )
    const r = rows[0]!
    const main = db.maxConnections + req.engine
    const others = Math.max(0, r.used - db.connectionCount)
    const pending = Math.max(0, r.claimed - r.tagged)
    const request = { threads: req.threads, perWorker: req.perWorker, main, onOverBudget: req.onOverBudget }
    let plan: BudgetPlan
    if (req.connectionBudget !== undefined) {
      if (!Number.isInteger(req.connectionBudget) || req.connectionBudget < main + 1) {
        throw new PgcrewError(
          'INVALID_OPTION',
          `connectionBudget must be a whole number ≥ ${main + 1} on a machine of a distributed run (main pool ${db.maxConnections} + engine ${req.engine} + one worker connection), not ${req.connectionBudget}`,
        )
      }
      plan = planBudget(request, req.connectionBudget, `budget ${req.connectionBudget} (explicit)`, 'explicit')
    } else {
      const budget = r.max - r.reserved - others - pending
      const text = `budget ${budget} = max_connections ${r.max} − reserved ${r.reserved} − held by other sessions ${others} − claimed by machines starting up ${pending}`
      plan = planBudget(request, budget, text, 'server')
    }
    plan = { ...plan, explanation: `${plan.explanation} (main ${main} = pool ${db.maxConnections} + engine ${req.engine})` }
    // What is open already (this transaction's connection among it) is counted in numbackends.
    const opened = await open(claimName(req.tag, Math.max(0, plan.total - db.connectionCount)))
    return { plan, opened }
  })
}
