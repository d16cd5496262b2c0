import { pipelineStatus } from '../history/pipeline-status.ts'
import { runForJson } from '../history/run-list.ts'
import type { RunRecord } from '../history/run-record.ts'
import { formatEta } from '../pipeline/pipeline-rate.ts'
import type { Database } from '../database/database.ts'
import type { PipelineDefinition } from '../pipeline/pipeline.ts'
import { UsageError, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, pipelineTarget, withHistoryDatabase } from './cli-history-database.ts'
import { keyValues, printJson, println, table } from './cli-output.ts'

/** The source's length when it is an array (given, or what tasks(db) returns); undefined otherwise or when it fails. */
async function countTasks(def: PipelineDefinition | undefined, db: Database): Promise<number | undefined> {
  if (!def) return undefined
  try {
    const source = typeof def.tasks === 'function' ? await def.tasks(db) : def.tasks
    return Array.isArray(source) ? source.length : undefined
  } catch {
    return undefined
  }
}

const time = (d: Date): string => d.toISOString().replace('T', ' ').slice(0, 19)

/** The runs table of status and runs. */
export function runsTable(runs: RunRecord[]): string {
  return table(
    ['id', 'status', 'started', 'duration', 'done', 'failed', 'tasks/s', 'host'],
    runs.map((r) => [
      String(r.id),
      r.status,
      time(r.startedAt),
      formatEta(r.durationMillis / 1000),
      r.done === null ? '-' : String(r.done),
      r.failed === null ? '-' : String(r.failed),
      r.tasksPerSecond === null ? '-' : String(r.tasksPerSecond),
      r.host ?? '-',
    ]),
  )
}

export const command: Command = {
  name: 'status',
  summary: "A pipeline's progress: done and failed keys, what runs now and where, its last runs, the ETA",
  usage: `pgcrew status PIPELINE [--ledger TABLE] [--recount] [--profile P] [--url URL] [--as WHO] [--json]

  PIPELINE           a pipeline module (its tasks are counted when they are an array), or the
                     pipeline's name in the ledger
  --ledger TABLE     the ledger table (default: the module's, else pgcrew_ledger)
  --recount          count every done key again (status keeps the count and reads only the keys
                     done since; after ledger rows were deleted or changed by hand, recount)
${HISTORY_CONNECTION_USAGE}
  --json             every figure as a number; times as ISO strings`,
  options: { ...HISTORY_CONNECTION_OPTIONS, ledger: { type: 'string' }, recount: { type: 'boolean' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError("status takes one PIPELINE (a module or the pipeline's name)")
    const target = await pipelineTarget(positionals[0]!, values.ledger as string | undefined)
    return withHistoryDatabase(values, io, async (db) => {
      const total = await countTasks(target.def, db)
      const s = await pipelineStatus(db, { pipeline: target.name, ledger: target.ledger, total, recount: values.recount === true })
      if (values.json === true) {
        printJson(io, { ...s, runs: s.runs.map(runForJson) })
        return 0
      }
      const running = s.running.map((r) => `run ${r.id} on ${r.host ?? '?'} (pid ${r.pid ?? '?'}) since ${time(r.startedAt)}, ${r.tasksPerSecond} tasks/s`).join('; ')
      println(
        io.stdout,
        keyValues([
          ['pipeline', `${s.pipeline} (ledger ${s.ledger})`],
          ['done', String(s.done)],
          ['failed', String(s.failed) + (s.failed > 0 ? ` (pgcrew failures ${s.pipeline}; pgcrew retry ${s.pipeline} --failed)` : '')],
          ['remaining', s.remaining === null ? 'unknown (the task source is not an array)' : `${s.remaining} of ${s.total}`],
          ['running', running || 'nothing'],
          ['eta', s.etaSeconds === null ? undefined : formatEta(s.etaSeconds)],
        ]),
      )
      if (s.runs.length > 0) println(io.stdout, '\n' + runsTable(s.runs))
      return 0
    })
  },
}
