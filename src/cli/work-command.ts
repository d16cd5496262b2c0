import { Database } from '../database/database.ts'
import { shownPath, startEmbeddedDefault } from '../cluster/embedded-default.ts'
import { loadPipeline } from '../pipeline/pipeline.ts'
import { machineFqdn } from '../connect/profiles.ts'
import type { TempCluster } from '../cluster/temp-cluster.ts'
import { runDistributed, workPipeline, type WorkSummary } from '../distributed/distributed-work.ts'
import { machineBar, machineLines, type MachineProgress } from '../distributed/distributed-progress.ts'
import type { DistributedEvent } from '../distributed/distributed-options.ts'
import { DISTRIBUTED_DEFAULTS } from '../distributed/distributed-options.ts'
import { UsageError, type CliIO, type Command } from './cli-command.ts'
import { connectAs } from './cli-connect-as.ts'
import { keyValues, printJson, println } from './cli-output.ts'
import { isConfigured } from '../connect/nothing-configured.ts'
import { int } from './run-command.ts'

function printSummary(io: CliIO, s: WorkSummary): void {
  const workers = Object.entries(s.perWorker)
    .map(([id, n]) => `#${id}: ${n}`)
    .join(', ')
  const e = s.enqueued
  println(
    io.stdout,
    keyValues([
      ['pipeline', s.pipeline + (s.cancelled ? ' (cancelled: this machine stopped; the others go on, or run again to resume)' : '')],
      ['machine', `${s.host} (engine pool ${s.poolId})`],
      ['enqueued', e && `${e.queued} tasks in ${e.jobs} jobs (${e.seen} seen, ${e.alreadyDone} already done) in ${(e.durationMillis / 1000).toFixed(1)} s`],
      ['tasks', `${s.done} done here, ${s.skipped} skipped (already done), ${s.failed} failed, ${s.retried} retried, in ${s.jobs} jobs`],
      ['pipeline total', `${s.pipelineDone} done (ledger, every machine)`],
      ['time', `${(s.durationMillis / 1000).toFixed(1)} s, ${s.tasksPerSecond} tasks/s`],
      ['threads', `${s.threads}, ${s.connections} connections at most`],
      ['budget', s.budgetExplanation],
      ['per worker', workers || '-'],
      ['freed', s.freed.jobs ? `${s.freed.jobs} job(s) of dead machine(s) ${s.freed.poolIds.join(', ')}` : undefined],
    ]),
  )
  for (const f of s.failures) println(io.stdout, `failed: ${f.key} after ${f.attempts} attempt(s): ${f.code ? `[${f.code}] ` : ''}${f.message}`)
}

function eventLine(event: DistributedEvent): string {
  switch (event.type) {
    case 'started':
      return `pgcrew: ${event.host} joined as engine pool ${event.poolId} (sessions named "pgcrew ${event.tag} …"); ${event.budget}`
    case 'freed':
      return `pgcrew: freed ${event.jobs} job(s) of ${event.poolIds.join(', ')}: their liveness lock is gone (the machine died or lost its connection)`
    case 'stopping':
      return `pgcrew: ${event.reason}`
    case 'engine':
      return `pgcrew: ${event.message}`
  }
}

export const WORK_USAGE_FLAGS = `  --threads N        worker threads on this machine (default: every core)
  --profile P        the server, as for run (the hostname picks the profile; PGCREW_HOSTNAME overrides it)
  --as WHO           admin, user, or a role name
  --per-worker N     tasks in flight per thread, each with its own connection (default 1)
  --budget N         at most N connections on this machine, main pool (2), engine (${DISTRIBUTED_DEFAULTS.engineConnections}) and its
                     liveness connection (1) included (default: what the server leaves free,
                     less what machines starting at the same time have claimed)
  --retries N        retries of a task after a transient error such as a deadlock (default 3)
  --retry-window S   how long a lost connection is retried, in seconds (default 60)
  --tasks-per-job N  tasks in one engine job (default ${DISTRIBUTED_DEFAULTS.tasksPerJob}); more spreads the queue's cost thinner
  --follow           keep waiting for new jobs when the queue is empty (until Ctrl-C)
  --json             print a machine-readable summary (no progress output)`

/** `pgcrew work` and `pgcrew run --distributed`: one machine of a distributed run. */
export async function runMachine(values: Record<string, unknown>, spec: string, io: CliIO, enqueue: boolean): Promise<number> {
  const threads = int(values.threads, '--threads', 1, 1024)
  const perWorkerConnections = int(values['per-worker'], '--per-worker', 1, 1000)
  const connectionBudget = int(values.budget, '--budget', 2)
  const retries = int(values.retries, '--retries', 0, 1000)
  const retryWindowSeconds = int(values['retry-window'], '--retry-window', 0, 86_400)
  const tasksPerJob = int(values['tasks-per-job'], '--tasks-per-job', 1, 100_000)
  const profile = values.profile as string | undefined
  const json = values.json === true
  const def = await loadPipeline(spec)
  let cluster: TempCluster | undefined
  if (!isConfigured(profile, io.env)) {
    cluster = await startEmbeddedDefault({})
    if (!json) println(io.stderr, `pgcrew: nothing configured (no profile, no PG* variable): using pgcrew's own PostgreSQL at ${cluster.displayUrl}, data in ${shownPath(cluster.dataDir)}`)
  }
  try {
    await using db = new Database({ profile, connectionString: cluster?.url, max: 2, env: io.env })
    await connectAs(db, values.as as string | undefined)
    const stderrIsTTY = (io.stderr as { isTTY?: boolean }).isTTY === true
    const progress: MachineProgress | undefined = json ? undefined : stderrIsTTY ? machineBar(io.stderr, tasksPerJob ?? DISTRIBUTED_DEFAULTS.tasksPerJob) : machineLines(io.stderr)
    const options = {
      threads,
      perWorkerConnections,
      connectionBudget,
      retries,
      retryWindowMillis: retryWindowSeconds === undefined ? undefined : retryWindowSeconds * 1000,
      tasksPerJob,
      follow: values.follow === true,
      host: machineFqdn(io.env),
      signal: io.signal,
      onProgress: progress?.update,
      onEvent: json ? undefined : (event: DistributedEvent) => println(io.stderr, eventLine(event)),
    }
    let summary: WorkSummary
    try {
      summary = await (enqueue ? runDistributed : workPipeline)(db, def, options)
    } finally {
      progress?.stop()
    }
    if (json) printJson(io, summary)
    else printSummary(io, summary)
    return summary.cancelled || summary.failed > 0 ? 1 : 0
  } finally {
    await cluster?.stop()
  }
}

export const command: Command = {
  name: 'work',
  summary: 'Join a distributed run of a pipeline: run its queued jobs on this machine',
  usage: `pgcrew work PIPELINE [--threads N] [--profile P] [--as admin|user|ROLE] [--per-worker N] [--budget N] [--retries N] [--retry-window S] [--tasks-per-job N] [--follow] [--json]

  PIPELINE           the same module as the machine that ran \`pgcrew run PIPELINE --distributed\`
${WORK_USAGE_FLAGS}

  The queue lives in the server's graphile_worker schema. A machine that dies (even kill -9) loses
  its liveness lock, and the others retake its jobs within seconds; Ctrl-C stops this machine only.`,
  options: {
    threads: { type: 'string' },
    profile: { type: 'string' },
    as: { type: 'string' },
    'per-worker': { type: 'string' },
    budget: { type: 'string' },
    retries: { type: 'string' },
    'retry-window': { type: 'string' },
    'tasks-per-job': { type: 'string' },
    follow: { type: 'boolean' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1)
      throw new UsageError(positionals.length ? `work takes one PIPELINE, got ${positionals.length}` : 'work needs a PIPELINE module (the one `pgcrew run PIPELINE --distributed` runs)')
    return runMachine(values, positionals[0]!, io, false)
  },
}
