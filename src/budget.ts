import type { Database } from './database.ts'
import { PgcrewError } from './errors.ts'

/** How many connections a crew may open, and how that number was reached. */
export interface BudgetPlan {
  /** The ceiling: explicit, or what the server can still give. */
  budget: number
  source: 'explicit' | 'server'
  threads: number
  perWorker: number
  /** The main thread's pool size. */
  main: number
  /** main + threads × perWorker after any clamping. */
  total: number
  clamped: boolean
  /** The arithmetic, for people: "budget 17 = max_connections 20 − reserved 3 − in use 0; 2 + 8 × 1 = 10". */
  explanation: string
}

export interface BudgetRequest {
  threads: number
  perWorker: number
  main: number
  connectionBudget?: number
  onOverBudget: 'clamp' | 'refuse'
}

/** What the server can still give: max_connections − reserved slots − connections others hold. */
export async function serverBudget(db: Database): Promise<{ budget: number; text: string }> {
  const { rows } = await db.query<{ max: number; su: number; reserved: number; used: number }>(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS su,
            coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used`,
  )
  const r = rows[0]!
  // Our own main-pool connections are counted in `main`, not as someone else's.
  const others = Math.max(0, r.used - db.connectionCount)
  const budget = r.max - r.su - r.reserved - others
  return { budget, text: `budget ${budget} = max_connections ${r.max} − reserved ${r.su + r.reserved} − held by other sessions ${others}` }
}

/** Fit threads × perWorker + main inside the budget: clamp perWorker first, then threads, or refuse. */
export function planBudget(req: BudgetRequest, budget: number, budgetText: string, source: 'explicit' | 'server'): BudgetPlan {
  const wanted = req.main + req.threads * req.perWorker
  const head = `${budgetText}; wanted ${req.main} (main) + ${req.threads} threads × ${req.perWorker} = ${wanted}`
  if (wanted <= budget) {
    return { budget, source, threads: req.threads, perWorker: req.perWorker, main: req.main, total: wanted, clamped: false, explanation: `${head} — fits` }
  }
  const available = budget - req.main
  if (req.onOverBudget === 'refuse' || available < 1) {
    throw new PgcrewError('BUDGET_EXCEEDED', `${head} — over budget${available < 1 ? '; not even one worker connection is left' : ''}; lower --threads or per-worker connections, or raise --budget`, { details: { budget, wanted } })
  }
  const perWorker = Math.max(1, Math.min(req.perWorker, Math.floor(available / req.threads)))
  const threads = Math.min(req.threads, Math.floor(available / perWorker))
  const total = req.main + threads * perWorker
  return { budget, source, threads, perWorker, main: req.main, total, clamped: true, explanation: `${head} — clamped to ${threads} threads × ${perWorker} = ${total}` }
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
