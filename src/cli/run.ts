import { PG_ENV_KEYS } from '../connection-params.ts'
import { Database } from '../database.ts'
import { PgcrewError } from '../errors.ts'
import { loadPipeline, runPipeline, type RunSummary } from '../pipeline.ts'
import { chooseProfile, loadProfiles } from '../profiles.ts'
import { barProgress, lineProgress, silentProgress } from '../progress.ts'
import { startTempCluster, type TempCluster } from '../temp-cluster.ts'
import { UsageError, type CliIO, type Command } from './command.ts'
import { connectAs } from './connect-as.ts'
import { keyValues, printJson, println } from './output.ts'


/** Is anything configured (profile for this host, PG* variables)? If not, the run gets a temp server. */
function configured(profile: string | undefined, env: NodeJS.ProcessEnv): boolean {
  if (profile || env.PGCREW_PROFILE || PG_ENV_KEYS.some((k) => env[k])) return true
  try {
    chooseProfile(loadProfiles({ env }), undefined, env)
    return true
  } catch (error) {
    if (error instanceof PgcrewError && error.code === 'NO_PROFILE_MATCHES') return false
    throw error
  }
}

/** A flag's whole number, written plainly (no 1e3, 0x10 or padding) and within [min, max]. */
function int(value: unknown, flag: string, min: number, max = 100_000): number | undefined {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(String(value)) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} takes a whole number from ${min} to ${max}, not "${value}"`)
  return n
}

function printSummary(io: CliIO, s: RunSummary): void {
  const workers = Object.entries(s.perWorker)
    .map(([id, n]) => `#${id}: ${n}`)
    .join(', ')
  println(
    io.stdout,
    keyValues([
      ['pipeline', s.pipeline + (s.cancelled ? ' (cancelled: run again to resume)' : '')],
      ['tasks', `${s.seen} seen, ${s.done} done, ${s.skipped} skipped (already done), ${s.failed} failed, ${s.retried} retried`],
      ['time', `${(s.durationMillis / 1000).toFixed(1)} s, ${s.tasksPerSecond} tasks/s`],
      ['threads', `${s.threads}, ${s.connections} connections at most`],
      ['budget', s.budget],
      ['per worker', workers || '-'],
    ]),
  )
  for (const f of s.failures) println(io.stdout, `failed: ${f.key} after ${f.attempts} attempt(s): ${f.code ? `[${f.code}] ` : ''}${f.message}`)
}

export const command: Command = {
  name: 'run',
  summary: 'Run a pipeline across worker threads; resumable, each task exactly once',
  usage: `pgcrew run PIPELINE [--threads N] [--profile P] [--as admin|user|ROLE] [--per-transaction] [--budget N] [--retries N] [--retry-window S] [--json]

  PIPELINE           a module whose default export is definePipeline({ name, worker, tasks })
  --threads N        worker threads (default: every core)
  --profile P        run against profile P; with no profile and no PG* settings, a temporary
                     PostgreSQL is started for the run and removed after it
  --as WHO           admin, user, or a role name
  --per-transaction  a fresh connection per task instead of a pool in each worker
  --budget N         at most N connections in all (default: from the server's max_connections)
  --retries N        retries of a task after a transient error such as a deadlock (default 3)
  --retry-window S   how long a lost connection (server restarting, unreachable or full) is
                     retried, in seconds, by tasks and by the run itself (default 60)
  --json             print a machine-readable summary (no progress output)`,
  options: {
    threads: { type: 'string' },
    profile: { type: 'string' },
    as: { type: 'string' },
    'per-transaction': { type: 'boolean' },
    budget: { type: 'string' },
    retries: { type: 'string' },
    'retry-window': { type: 'string' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(positionals.length ? `run takes one PIPELINE, got ${positionals.length}` : 'run needs a PIPELINE module (for example examples/demo-pipeline.ts)')
    const threads = int(values.threads, '--threads', 1, 1024)
    const connectionBudget = int(values.budget, '--budget', 2)
    const retries = int(values.retries, '--retries', 0, 1000)
    const retryWindowSeconds = int(values['retry-window'], '--retry-window', 0, 86_400)
    const profile = values.profile as string | undefined
    const as = values.as as string | undefined
    const json = values.json === true
    const def = await loadPipeline(positionals[0]!)

    let cluster: TempCluster | undefined
    let env = io.env
    if (!configured(profile, env)) {
      cluster = await startTempCluster()
      if (!json) println(io.stderr, `pgcrew: no profile or PG* settings: using a temporary PostgreSQL (${cluster.source} binaries) at ${cluster.displayUrl}; it is removed after the run`)
    }
    try {
      await using db = new Database({
        profile,
        connectionString: cluster?.url,
        pooling: values['per-transaction'] ? 'per-transaction' : undefined,
        max: 2,
        env,
      })
      await connectAs(db, as)
      // Progress goes to stderr, so it is stderr that decides bar or lines (`pgcrew run … | tee` still gets a bar).
      const stderrIsTTY = (io.stderr as { isTTY?: boolean }).isTTY === true
      const progress = json ? silentProgress : stderrIsTTY ? barProgress(io.stderr) : lineProgress(io.stderr)
      const summary = await runPipeline(db, def, { threads, connectionBudget, retries, retryWindowMillis: retryWindowSeconds === undefined ? undefined : retryWindowSeconds * 1000, progress, signal: io.signal })
      if (json) printJson(io, summary)
      else printSummary(io, summary)
      return summary.cancelled || summary.failed > 0 ? 1 : 0
    } finally {
      await cluster?.stop()
    }
  },
}
