// The server the history commands (status, failures, retry, reset, runs, report) read: the one
// `pgcrew run` would use with the same flags — the profile, PG* settings, or, with nothing
// configured, pgcrew's own PostgreSQL with its data in .pgcrew/data of the project.
import { existsSync } from 'node:fs'
import { extname } from 'node:path'
import { shownPath, startEmbeddedDefault } from '../cluster/embedded-default.ts'
import type { TempCluster } from '../cluster/temp-cluster.ts'
import { isConfigured } from '../connect/nothing-configured.ts'
import { Database } from '../database/database.ts'
import { DEFAULT_LEDGER } from '../pipeline/pipeline-ledger.ts'
import { loadPipeline, type PipelineDefinition } from '../pipeline/pipeline.ts'
import { UsageError, type CliIO, type ParseArgsOptionsConfig } from './cli-command.ts'
import { connectAs } from './cli-connect-as.ts'
import { println } from './cli-output.ts'

/** The connection flags every history command takes. */
export const HISTORY_CONNECTION_OPTIONS: ParseArgsOptionsConfig = {
  profile: { type: 'string' },
  url: { type: 'string' },
  as: { type: 'string' },
}

export const HISTORY_CONNECTION_USAGE = `  --profile P        use profile P (default: as pgcrew run chooses; with nothing configured,
                     pgcrew's own PostgreSQL with the data in .pgcrew/data)
  --url URL          connect to a postgres:// or pq:// string
  --as WHO           admin, user, or a role name`

/** A flag's whole number within [min, max]. */
export function wholeFlag(value: unknown, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(String(value)) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} takes a whole number from ${min} to ${max}, not "${value}"`)
  return n
}

/** Connect as the flags say, run `fn`, then close (and stop pgcrew's own PostgreSQL if it was started). */
export async function withHistoryDatabase<T>(values: Record<string, unknown>, io: CliIO, fn: (db: Database) => Promise<T>, dbOptions: { max?: number } = {}): Promise<T> {
  const profile = values.profile as string | undefined
  const url = values.url as string | undefined
  let cluster: TempCluster | undefined
  if (!url && !isConfigured(profile, io.env)) {
    cluster = await startEmbeddedDefault({})
    if (values.json !== true) println(io.stderr, `pgcrew: nothing configured: using pgcrew's own PostgreSQL, data in ${shownPath(cluster.dataDir)}`)
  }
  try {
    await using db = new Database({ profile, connectionString: url ?? cluster?.url, env: io.env, max: dbOptions.max ?? 2 })
    await connectAs(db, values.as as string | undefined)
    return await fn(db)
  } finally {
    await cluster?.stop()
  }
}

/** What a PIPELINE argument names: a pipeline module (its name and ledger, and the definition), or a pipeline's name. */
export interface PipelineTarget {
  name: string
  ledger: string
  def?: PipelineDefinition
}

const MODULE = /^\.(?:[mc]?[jt]s|[jt]sx)$/

/** A module path (an existing .ts/.js file) is loaded; anything else is taken as the pipeline's name in the ledger. */
export async function pipelineTarget(arg: string, ledger: string | undefined): Promise<PipelineTarget> {
  if (arg.startsWith('file:') || (MODULE.test(extname(arg)) && existsSync(arg))) {
    const def = await loadPipeline(arg)
    return { name: def.name, ledger: ledger ?? def.ledger ?? DEFAULT_LEDGER, def }
  }
  if (MODULE.test(extname(arg))) throw new UsageError(`no pipeline module at ${arg}; give a pipeline module or the pipeline's name`)
  return { name: arg, ledger: ledger ?? DEFAULT_LEDGER }
}
