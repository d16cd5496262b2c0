import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'

/** The numbers of a budget plan, for programs (`--json` prints them as `budgetPlan`). */
export interface BudgetNumbers {
  /** The ceiling: explicit, or what the server can still give. */
  budget: number
  source: 'explicit' | 'server'
  /** The main thread's pool size. */
  main: number
  /** Connections held beside the main pool for the whole run (the run history's liveness connection). */
  beside: number
  threads: number
  perWorker: number
  /** main + beside + threads × perWorker after any clamping. */
  total: number
  clamped: boolean
}

/** How many connections a crew may open, and how that number was reached. */
export interface BudgetPlan extends BudgetNumbers {
  /** The arithmetic, for people: "budget 17 = max_connections 20 − reserved 3 − held by other sessions 0; wanted 2 (main) + 8 threads × 1 = 10 — fits". */
  explanation: string
}

export interface BudgetRequest {
  threads: number
  perWorker: number
  main: number
  /** Connections held beside the main pool (default 0). */
  beside?: number
  connectionBudget?: number
  onOverBudget: 'clamp' | 'refuse'
  /**
   * Over budget, give up threads before connections per thread (`threads: 'auto'`, where one thread
   * carries the run's concurrency alone until its loop is busy). Default: connections per thread first.
   */
  threadsFirst?: boolean
}

/**
 * What the server can still give: max_connections − reserved slots − connections others hold.
 *
 * Sessions are counted with `pg_stat_database.numbackends`, which every role may read in full:
 * `pg_stat_activity` hides `backend_type` of other roles' sessions from a role without
 * pg_read_all_stats, so counting 'client backend' rows there misses them. numbackends counts every
 * backend connected to a database: client sessions (ours included, hence `db.connectionCount` is
 * taken off) and, for a moment, autovacuum and parallel workers, which use slots of their own, so
 * the error is on the safe side. The launchers and auxiliary processes are connected to no database.
 */
export async function serverBudget(db: Database): Promise<{ budget: number; text: string }> {
  const { rows } = await db.query<{ max: number; su: number; reserved: number; used: number }>(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS su,
            coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
            (SELECT coalesce(sum(numbackends), 0)::int FROM pg_stat_database) AS used`,
  )
  const r = rows[0]!
  // Our own main-pool connections are counted in `main`, not as someone else's.
  const others = Math.max(0, r.used - db.connectionCount)
  const budget = r.max - r.su - r.reserved - others
  return { budget, text: `budget ${budget} = max_connections ${r.max} − reserved ${r.su + r.reserved} − held by other sessions ${others}` }
}

/** "2 (main) + 1 (run history) + 4 threads × 1 = 7": the whole sum, main pool included. */
function sum(main: number, beside: number, threads: number, perWorker: number): string {
  return `${main} (main) + ${beside ? `${beside} (run history) + ` : ''}${threads} ${threads === 1 ? 'thread' : 'threads'} × ${perWorker} = ${main + beside + threads * perWorker}`
}

/** What to change, naming `pgcrew run`'s flags (the library options are named alike). */
function advice(source: 'explicit' | 'server', noneLeft: boolean, main: number): string {
  if (!noneLeft) return source === 'explicit' ? 'lower --threads or --per-worker, or raise --budget' : 'lower --threads or --per-worker'
  return source === 'explicit' ? `raise --budget to at least ${main + 1}` : "close other sessions, wait for them to end, or raise the server's max_connections"
}

/** Fit threads × perWorker + main inside the budget: clamp perWorker first, then threads, or refuse. */
export function planBudget(req: BudgetRequest, budget: number, budgetText: string, source: 'explicit' | 'server'): BudgetPlan {
  const beside = req.beside ?? 0
  const fixed = req.main + beside
  const wanted = fixed + req.threads * req.perWorker
  const head = `${budgetText}; wanted ${sum(req.main, beside, req.threads, req.perWorker)}`
  if (wanted <= budget) {
    return { budget, source, main: req.main, beside, threads: req.threads, perWorker: req.perWorker, total: wanted, clamped: false, explanation: `${head} — fits` }
  }
  const available = budget - fixed
  if (req.onOverBudget === 'refuse' || available < 1) {
    const noneLeft = available < 1
    throw new PgcrewError('BUDGET_EXCEEDED', `${head} — over budget${noneLeft ? '; not even one worker connection is left' : ''}; ${advice(source, noneLeft, fixed)}`, {
      details: { budget, wanted },
    })
  }
  const perWorker = req.threadsFirst ? Math.min(req.perWorker, available) : Math.max(1, Math.min(req.perWorker, Math.floor(available / req.threads)))
  const threads = Math.min(req.threads, Math.floor(available / perWorker))
  const total = fixed + threads * perWorker
  return { budget, source, main: req.main, beside, threads, perWorker, total, clamped: true, explanation: `${head} — clamped to ${sum(req.main, beside, threads, perWorker)}` }
}

/** The plan without its sentence: what `--json` and programs read. */
export function budgetNumbers(plan: BudgetPlan): BudgetNumbers {
  const { budget, source, main, beside, threads, perWorker, total, clamped } = plan
  return { budget, source, main, beside, threads, perWorker, total, clamped }
}

/** Compute the plan for a crew of this Database. */
export async function computeBudget(db: Database, req: BudgetRequest): Promise<BudgetPlan> {
  if (req.connectionBudget !== undefined) {
    if (!Number.isInteger(req.connectionBudget) || req.connectionBudget < 2) throw new PgcrewError('INVALID_OPTION', `connectionBudget must be a whole number ≥ 2, not ${req.connectionBudget}`)
    return planBudget(req, req.connectionBudget, `budget ${req.connectionBudget} (explicit)`, 'explicit')
  }
  const { budget, text } = await serverBudget(db)
  return planBudget(req, budget, text, 'server')
}
