import type { RunOptions } from '../pipeline/pipeline.ts'
import { requireWhole } from '../connect/connect-options.ts'

/** Options of {@link enqueuePipeline} and {@link workPipeline}; all optional, defaults in {@link DISTRIBUTED_DEFAULTS}. */
export interface DistributedOptions extends Pick<
  RunOptions,
  'perWorkerConnections' | 'connectionBudget' | 'onOverBudget' | 'retries' | 'retryWindowMillis' | 'retryDelayMillis' | 'taskTimeoutMillis' | 'resourceLimits' | 'signal'
> {
  /** Worker threads on this machine. Default: every core. */
  threads?: number
  /** Tasks in one engine job (each still runs in its own transaction). More amortises the queue's cost per task. */
  tasksPerJob?: number
  /** Keys checked against the ledger, and jobs' worth of tasks added, per round trip when enqueueing. */
  enqueueBatchSize?: number
  /** The job engine's own pool (one of them holds its LISTEN). Counted in the connection budget. */
  engineConnections?: number
  /** How often every machine looks for dead machines' jobs (and whether the pipeline is finished). */
  sweepIntervalMillis?: number
  /**
   * How long a machine's liveness lock must stay missing before its jobs are freed: a server restart
   * takes every lock at once, and the machines take theirs again a moment after it is back.
   */
  deadAfterMillis?: number
  /** How often the engine looks for jobs besides being woken by NOTIFY (retries scheduled later). */
  pollIntervalMillis?: number
  /** The schema graphile-worker keeps its queue in (created on first use). */
  schema?: string
  /** Keep waiting for new jobs once the queue is empty (until Ctrl-C). Default: stop when nothing is left. */
  follow?: boolean
  /** The host name written to the ledger for this machine's tasks. Default: this machine's FQDN (`PGCREW_HOSTNAME` wins). */
  host?: string
  /** Told about machine-level events worth a line (dead machines' jobs freed, the budget, stopping). */
  onEvent?: (event: DistributedEvent) => void
  /** Called about once a second with this machine's counts and the pipeline's. */
  onProgress?: (state: DistributedProgress) => void
}

/** Something a machine did that its operator wants to see. */
export type DistributedEvent =
  | { type: 'started'; poolId: string; host: string; tag: string; budget: string }
  | { type: 'freed'; poolIds: string[]; jobs: number }
  | { type: 'stopping'; reason: string }
  /** A warning or error line of the job engine (graphile-worker), such as a lost connection. */
  | { type: 'engine'; message: string }

/** This machine's counts and the pipeline's, for a progress display. */
export interface DistributedProgress {
  done: number
  skipped: number
  failed: number
  retried: number
  elapsedMillis: number
  /** Done keys of the pipeline in the ledger, every machine included. */
  pipelineDone: number
  /** Jobs still queued or running for the pipeline, every machine included. */
  jobsLeft: number
}

/** The defaults of {@link DistributedOptions}. */
export const DISTRIBUTED_DEFAULTS = Object.freeze({
  tasksPerJob: 20,
  enqueueBatchSize: 1000,
  engineConnections: 3,
  sweepIntervalMillis: 2000,
  deadAfterMillis: 5000,
  pollIntervalMillis: 2000,
  schema: 'graphile_worker',
  follow: false,
})

/** The options with every default filled in. */
export type ResolvedDistributedOptions = Readonly<
  DistributedOptions & { [K in keyof typeof DISTRIBUTED_DEFAULTS]: (typeof DISTRIBUTED_DEFAULTS)[K] extends boolean ? boolean : (typeof DISTRIBUTED_DEFAULTS)[K] extends number ? number : string }
>

/** Fill in the defaults once, checking the numbers. */
export function resolveDistributed(options: DistributedOptions): ResolvedDistributedOptions {
  const r = {
    ...options,
    tasksPerJob: options.tasksPerJob ?? DISTRIBUTED_DEFAULTS.tasksPerJob,
    enqueueBatchSize: options.enqueueBatchSize ?? DISTRIBUTED_DEFAULTS.enqueueBatchSize,
    engineConnections: options.engineConnections ?? DISTRIBUTED_DEFAULTS.engineConnections,
    sweepIntervalMillis: options.sweepIntervalMillis ?? DISTRIBUTED_DEFAULTS.sweepIntervalMillis,
    deadAfterMillis: options.deadAfterMillis ?? DISTRIBUTED_DEFAULTS.deadAfterMillis,
    pollIntervalMillis: options.pollIntervalMillis ?? DISTRIBUTED_DEFAULTS.pollIntervalMillis,
    schema: options.schema ?? DISTRIBUTED_DEFAULTS.schema,
    follow: options.follow ?? DISTRIBUTED_DEFAULTS.follow,
  }
  requireWhole('tasksPerJob', r.tasksPerJob, 1)
  requireWhole('enqueueBatchSize', r.enqueueBatchSize, 1)
  // One connection is the engine's LISTEN, held for good; at least one more runs its queries.
  requireWhole('engineConnections', r.engineConnections, 2)
  requireWhole('sweepIntervalMillis', r.sweepIntervalMillis, 10)
  requireWhole('deadAfterMillis', r.deadAfterMillis, 0)
  requireWhole('pollIntervalMillis', r.pollIntervalMillis, 10)
  return Object.freeze(r)
}
