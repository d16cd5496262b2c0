import { getRun, listRuns, runForJson, threadsText } from '../history/run-list.ts'
import { formatEta } from '../pipeline/pipeline-rate.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { UsageError, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, wholeFlag, withHistoryDatabase } from './cli-history-database.ts'
import { keyValues, printJson, println } from './cli-output.ts'
import { runsTable } from './status-command.ts'

export const command: Command = {
  name: 'runs',
  summary: 'The recorded runs (of one pipeline), newest first; runs show ID for one of them',
  usage: `pgcrew runs [PIPELINE] [--limit N] [--json]
       pgcrew runs show ID [--json]

  PIPELINE           only the runs of this pipeline (its name)
  --limit N          the newest N runs (default 20)
${HISTORY_CONNECTION_USAGE}`,
  options: { ...HISTORY_CONNECTION_OPTIONS, limit: { type: 'string' } },
  async run({ values, positionals }, io) {
    const json = values.json === true
    if (positionals[0] === 'show') {
      if (positionals.length !== 2 || !/^\d+$/.test(positionals[1]!)) throw new UsageError('runs show takes one run ID (a number, as pgcrew runs lists them)')
      const id = Number(positionals[1])
      return withHistoryDatabase(values, io, async (db) => {
        const run = await getRun(db, id)
        if (!run) throw new PgcrewError('RUN_NOT_FOUND', `there is no run ${id} in the run history; pgcrew runs lists them`, { details: { run: id } })
        if (json) {
          printJson(io, runForJson(run))
          return 0
        }
        const s = run.ended?.summary
        println(
          io.stdout,
          keyValues([
            ['run', `${run.id} of pipeline ${run.pipeline}`],
            ['status', run.status + (run.reason ? ` (${run.reason})` : '')],
            ['host', `${run.host ?? '?'} (pid ${run.pid ?? '?'})`],
            ['role', run.role ?? undefined],
            ['database', run.database ?? undefined],
            ['threads', threadsText(run) ?? undefined],
            ['started', run.startedAt.toISOString()],
            ['ended', run.endedAt?.toISOString()],
            ['duration', formatEta(run.durationMillis / 1000)],
            ['tasks', s ? `${s.seen} seen, ${s.done} done, ${s.skipped} skipped, ${s.failed} failed, ${s.retried} retried` : undefined],
            ['rate', s ? `${s.tasksPerSecond} tasks/s` : undefined],
          ]),
        )
        if (run.slowest.length) println(io.stdout, `slowest tasks:\n${run.slowest.map((t) => `  ${t.millis.toFixed(1).padStart(10)} ms  ${t.key} (worker #${t.worker})`).join('\n')}`)
        for (const f of s?.failures ?? []) println(io.stdout, `failed: ${f.key} after ${f.attempts} attempt(s): ${f.code ? `[${f.code}] ` : ''}${f.message}`)
        if (s && s.failed > s.failures.length) println(io.stdout, `… and ${s.failed - s.failures.length} more failures (pgcrew failures ${run.pipeline})`)
        return 0
      })
    }
    if (positionals.length > 1) throw new UsageError('runs takes at most one PIPELINE name (or: runs show ID)')
    const limit = wholeFlag(values.limit, '--limit', 1, 1_000_000) ?? 20
    return withHistoryDatabase(values, io, async (db) => {
      const runs = await listRuns(db, { pipeline: positionals[0], limit })
      if (json)
        printJson(
          io,
          runs.map(({ started: _s, ended: _e, ...run }) => run),
        )
      else println(io.stdout, runs.length ? runsTable(runs) : `no runs recorded${positionals[0] ? ` for pipeline ${positionals[0]}` : ''}`)
      return 0
    })
  },
}
