import { ledgerCounts, ledgerFailures } from '../history/ledger-queries.ts'
import { UsageError, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, pipelineTarget, wholeFlag, withHistoryDatabase } from './cli-history-database.ts'
import { printJson, println, table } from './cli-output.ts'

export const command: Command = {
  name: 'failures',
  summary: 'The keys of a pipeline that failed: attempts over all runs, error code and message, worker, host, when',
  usage: `pgcrew failures PIPELINE [--limit N] [--ledger TABLE] [--profile P] [--url URL] [--as WHO] [--json]

  PIPELINE           a pipeline module, or the pipeline's name in the ledger
  --limit N          the newest N failures (default 20; 0: all of them)
  --ledger TABLE     the ledger table (default: the module's, else pgcrew_ledger)
${HISTORY_CONNECTION_USAGE}`,
  options: { ...HISTORY_CONNECTION_OPTIONS, ledger: { type: 'string' }, limit: { type: 'string' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError("failures takes one PIPELINE (a module or the pipeline's name)")
    const limit = wholeFlag(values.limit, '--limit', 0, 1_000_000_000) ?? 20
    const target = await pipelineTarget(positionals[0]!, values.ledger as string | undefined)
    return withHistoryDatabase(values, io, async (db) => {
      const rows = await ledgerFailures(db, target.ledger, target.name, limit === 0 ? undefined : limit)
      const { failed } = await ledgerCounts(db, target.ledger, target.name)
      if (values.json === true) {
        printJson(io, { pipeline: target.name, ledger: target.ledger, failed, failures: rows })
        return 0
      }
      if (rows.length === 0) {
        println(io.stdout, `no failures recorded for pipeline ${target.name} (ledger ${target.ledger})`)
        return 0
      }
      println(
        io.stdout,
        table(
          ['key', 'attempts', 'code', 'worker', 'host', 'when', 'message'],
          rows.map((r) => [r.key, String(r.attempts), r.code ?? '-', r.worker === null ? '-' : `#${r.worker}`, r.host ?? '-', r.finishedAt.toISOString().slice(0, 19) + 'Z', r.message ?? '']),
        ),
      )
      if (failed > rows.length) println(io.stdout, `… and ${failed - rows.length} more failures (--limit 0 lists them all)`)
      return 0
    })
  },
}
