import { Database } from '../database/database.ts'
import { shownPath, startEmbeddedDefault } from '../cluster/embedded-default.ts'
import { loadPipeline, runPipeline, type RunSummary } from '../pipeline/pipeline.ts'
import { isConfigured } from '../connect/nothing-configured.ts'
import { planPipeline, type PipelinePlan } from '../pipeline/pipeline-plan.ts'
import { barProgress, lineProgress, silentProgress } from '../pipeline/pipeline-progress.ts'
import type { TempCluster } from '../cluster/temp-cluster.ts'
import { UsageError, type CliIO, type Command } from './cli-command.ts'
import { connectAs } from './cli-connect-as.ts'
import { CONNECTION_FLAGS, connectionFlagHelp, connectionFlags } from './cli-connection-flags.ts'
import { keyValues, printJson, println } from './cli-output.ts'

/** A flag's whole number, written plainly (no 1e3, 0x10 or padding) and within [min, max]. */
export function int(value: unknown, flag: string, min: number, max = 100_000): number | undefined {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(String(value)) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} takes a whole number from ${min} to ${max}, not "${value}"`)
  return n
}

/** --threads N (the message names auto where the run takes it: not with --distributed). */
function threadCount(value: unknown, autoAllowed: boolean): number | undefined {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(String(value)) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < 1 || n > 1024) throw new UsageError(`--threads takes a whole number from 1 to 1024${autoAllowed ? ', or auto' : ''}, not "${String(value)}"`)
  return n
}

export function printSummary(io: CliIO, s: RunSummary, keptIn: string | undefined): void {
  const workers = Object.entries(s.perWorker)
    .map(([id, n]) => `#${id}: ${n}`)
    .join(', ')
  println(
    io.stdout,
    keyValues([
      ['pipeline', s.pipeline + (s.cancelled ? ` (cancelled: run again to resume${keptIn ? `; the data is kept in ${keptIn}` : ''})` : '')],
      ['stopped', s.stopReason],
      ['tasks', `${s.seen} seen, ${s.done} done, ${s.skipped} skipped (already done), ${s.failed} failed, ${s.retried} retried`],
      ['time', `${(s.durationMillis / 1000).toFixed(1)} s, ${s.tasksPerSecond} tasks/s`],
      ['threads', `${s.inProcess ? 'none: the worker ran in this process' : s.autoThreads ? `${s.threads} (auto, up to ${s.budgetPlan.threads})` : s.threads}, ${s.connections} connections at most`],
      ['budget', s.budgetExplanation],
      ['per worker', workers || '-'],
    ]),
  )
  for (const f of s.failures) println(io.stdout, `failed: ${f.key} after ${f.attempts} attempt(s): ${f.code ? `[${f.code}] ` : ''}${f.message}`)
  const more = s.failed - s.failures.length
  if (more > 0) println(io.stdout, `… and ${more} more failure${more === 1 ? '' : 's'} (pgcrew failures ${s.pipeline} lists them all)`)
}

function printPlan(io: CliIO, plan: PipelinePlan, json: boolean): number {
  if (json) printJson(io, plan)
  else
    println(
      io.stdout,
      keyValues([
        ['pipeline', `${plan.pipeline} (dry run: nothing was run)`],
        ['ledger', plan.ledger + (plan.ledgerExists ? '' : ' (not created yet)')],
        ['tasks', `${plan.tasks}: ${plan.done} done, ${plan.failed} failed, ${plan.todo} still to do`],
        ['a run', `would run ${plan.failed + plan.todo}${plan.failed > 0 ? ` (the ${plan.failed} failed again)` : ''}`],
      ]),
    )
  return 0
}

export const command: Command = {
  name: 'run',
  summary: 'Run a pipeline across worker threads; resumable, each task exactly once',
  usage: `pgcrew run PIPELINE [--threads N|auto | --in-process] [--profile P] [--url URL] [--as admin|user|ROLE] [--dbversion V] [--limit N] [--dry-run] [--per-transaction] [--per-worker N] [--budget N] [--retries N] [--retry-window S] [--max-failures N] [--report FILE] [--fresh] [--distributed [--tasks-per-job N]] [--json]

  PIPELINE           a module whose default export is definePipeline({ name, worker, tasks })
  --threads N|auto   worker threads (default: every core); auto starts with one and adds one,
                     up to every core, while each thread in use is CPU-bound (--per-worker
                     then defaults to 4)
  --in-process       no worker threads: the one worker runs in this process, with --per-worker N
                     connections (faster for light tasks on a machine with few cores; no task
                     timeout, and a task's JavaScript holds up the progress output while it runs)
  --profile P        run against profile P. With nothing configured at all (no profile in any
                     profiles file, no PG* variable, no PGCREW_PROFILE), pgcrew starts its own
                     PostgreSQL, keeping its data in .pgcrew/data of the project for the next run
${connectionFlagHelp('url', 21)}
  --as WHO           admin, user, or a role name
${connectionFlagHelp('dbversion', 21)}
  --limit N          a trial run: only the first N tasks of the source (done ones are skipped)
  --dry-run          count the tasks done, failed and still to do; run none, write nothing
  --per-transaction  a fresh connection per task instead of a pool in each worker
  --per-worker N     tasks in flight per thread, each with its own connection (default 1; 4
                     with --threads auto)
  --budget N         at most N connections in all, main pool (2) included (default: what the
                     server's max_connections leaves free)
  --retries N        retries of a task after a transient error such as a deadlock (default 3)
  --retry-window S   how long a lost connection (server restarting, unreachable or full) is
                     retried, in seconds, by tasks and by the run itself (default 60)
  --max-failures N   stop handing out tasks once N have failed for good (running ones finish);
                     the summary and the run history say why the run stopped
  --report FILE      write the run's report to FILE when it ends (as pgcrew report RUN --html FILE)
  --fresh            with pgcrew's own PostgreSQL: remove .pgcrew/data first and start clean
  --distributed      enqueue the tasks the ledger does not show done as jobs (graphile-worker, in the
                     server's graphile_worker schema), then work on them; \`pgcrew work PIPELINE\`
                     on other machines joins in. Tasks must survive a JSON round trip
  --tasks-per-job N  with --distributed: tasks in one job (default 20)
  --json             print a machine-readable summary (no progress output)`,
  options: {
    ...CONNECTION_FLAGS,
    threads: { type: 'string' },
    'in-process': { type: 'boolean' },
    limit: { type: 'string' },
    'dry-run': { type: 'boolean' },
    'per-transaction': { type: 'boolean' },
    'per-worker': { type: 'string' },
    budget: { type: 'string' },
    retries: { type: 'string' },
    fresh: { type: 'boolean' },
    'retry-window': { type: 'string' },
    'max-failures': { type: 'string' },
    report: { type: 'string' },
    distributed: { type: 'boolean' },
    'tasks-per-job': { type: 'string' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(positionals.length ? `run takes one PIPELINE, got ${positionals.length}` : 'run needs a PIPELINE module (for example examples/demo-pipeline.ts)')
    const threads = values.threads === 'auto' ? 'auto' : threadCount(values.threads, !values.distributed)
    const inProcess = values['in-process'] === true
    if (inProcess && threads !== undefined) throw new UsageError('--in-process runs the one worker in this process: it takes no --threads (use --per-worker N for its connections)')
    if (inProcess && values.distributed) throw new UsageError('--distributed does not take --in-process')
    const perWorkerConnections = int(values['per-worker'], '--per-worker', 1, 1000)
    const connectionBudget = int(values.budget, '--budget', 2)
    const retries = int(values.retries, '--retries', 0, 1000)
    const retryWindowSeconds = int(values['retry-window'], '--retry-window', 0, 86_400)
    const maxFailures = int(values['max-failures'], '--max-failures', 1, 1_000_000_000)
    const limit = int(values.limit, '--limit', 0, Number.MAX_SAFE_INTEGER)
    const dryRun = values['dry-run'] === true
    const { profile, url, as, dbversion } = connectionFlags(values)
    const json = values.json === true
    if (values.distributed) {
      const other = (['per-transaction', 'fresh', 'max-failures', 'report'] as const).find((flag) => values[flag] !== undefined && values[flag] !== false)
      if (other) throw new UsageError(`--distributed does not take --${other}`)
      if (values.threads === 'auto') throw new UsageError('--distributed does not take --threads auto: give each machine its number of threads (--threads N)')
      // Loaded on use, as commands are: a local run never loads the job engine.
      const { runMachine } = await import('./work-command.ts')
      return runMachine(values, positionals[0]!, io, true)
    }
    if (values['tasks-per-job'] !== undefined) throw new UsageError('--tasks-per-job goes with --distributed')
    const def = await loadPipeline(positionals[0]!)

    let cluster: TempCluster | undefined
    const env = io.env
    const fresh = values.fresh === true
    let keptIn: string | undefined
    if (url !== undefined || isConfigured(profile, env)) {
      if (fresh) throw new UsageError("--fresh starts pgcrew's own PostgreSQL clean; this run is configured (a profile or PG* variables) and uses that server")
    } else {
      cluster = await startEmbeddedDefault({ fresh })
      keptIn = shownPath(cluster.dataDir)
      if (!json)
        println(
          io.stderr,
          `pgcrew: nothing configured (no profile, no PG* variable): using pgcrew's own PostgreSQL (${cluster.source} binaries) at ${cluster.displayUrl}, data in ${keptIn}${fresh ? ', started clean' : ''} (start clean with --fresh, or remove it: rm -rf ${keptIn})`,
        )
    }
    try {
      await using db = new Database({
        profile,
        connectionString: url ?? cluster?.url,
        dbversion,
        pooling: values['per-transaction'] ? 'per-transaction' : undefined,
        max: 2,
        env,
      })
      await connectAs(db, as)
      if (dryRun) return printPlan(io, await planPipeline(db, def, { limit }), json)
      // Progress goes to stderr, so it is stderr that decides bar or lines (`pgcrew run … | tee` still gets a bar).
      const stderrIsTTY = (io.stderr as { isTTY?: boolean }).isTTY === true
      const progress = json ? silentProgress : stderrIsTTY ? barProgress(io.stderr) : lineProgress(io.stderr)
      const retryWindowMillis = retryWindowSeconds === undefined ? undefined : retryWindowSeconds * 1000
      const summary = await runPipeline(db, def, { threads, inProcess, limit, perWorkerConnections, connectionBudget, retries, retryWindowMillis, maxFailures, progress, signal: io.signal })
      const report = values.report as string | undefined
      if (report && summary.runId !== undefined) {
        await (await import('../history/run-report.ts')).writeReport(db, summary.runId, report)
        if (!json) println(io.stderr, `pgcrew: wrote the report of run ${summary.runId} to ${report}`)
      } else if (report) println(io.stderr, `pgcrew: no report written: ${summary.history ?? 'the run was not recorded'}`)
      if (json) printJson(io, cluster ? { ...summary, server: { embedded: true, dataDir: cluster.dataDir } } : summary)
      else printSummary(io, summary, keptIn)
      return summary.cancelled || summary.failed > 0 || summary.stopReason ? 1 : 0
    } finally {
      await cluster?.stop()
      if (cluster && !json) println(io.stderr, `pgcrew: stopped pgcrew's own PostgreSQL; its data stays in ${keptIn} for the next run`)
    }
  },
}
