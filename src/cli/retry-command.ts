import { forgetFailures } from '../history/ledger-queries.ts'
import { retryFailed } from '../history/retry-failed.ts'
import { barProgress, lineProgress, silentProgress } from '../pipeline/pipeline-progress.ts'
import { UsageError, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, pipelineTarget, wholeFlag, withHistoryDatabase } from './cli-history-database.ts'
import { printJson, println } from './cli-output.ts'
import { printSummary } from './run-command.ts'

export const command: Command = {
  name: 'retry',
  summary: 'Run again only the keys of a pipeline that failed (or only make them runnable, --mark-only)',
  usage: `pgcrew retry PIPELINE --failed [--mark-only] [--threads N] [--max-failures N] [--profile P] [--url URL] [--as WHO] [--json]

  PIPELINE           the pipeline module (with --mark-only, its name in the ledger will do)
  --failed           retry the keys the ledger shows failed (their attempts keep adding up)
  --mark-only        run nothing: forget their failed rows, so the next pgcrew run does them
                     (their failures stay in the run history's events)
  --threads N        worker threads (default: every core)
  --max-failures N   stop once N tasks have failed again
  --ledger TABLE     the ledger table (default: the module's, else pgcrew_ledger)
${HISTORY_CONNECTION_USAGE}`,
  options: {
    ...HISTORY_CONNECTION_OPTIONS,
    failed: { type: 'boolean' },
    'mark-only': { type: 'boolean' },
    threads: { type: 'string' },
    'max-failures': { type: 'string' },
    ledger: { type: 'string' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError('retry takes one PIPELINE module')
    if (values.failed !== true) throw new UsageError('retry needs --failed (the keys the ledger shows failed are the ones retried)')
    const threads = wholeFlag(values.threads, '--threads', 1, 1024)
    const maxFailures = wholeFlag(values['max-failures'], '--max-failures', 1, 1_000_000_000)
    const json = values.json === true
    const target = await pipelineTarget(positionals[0]!, values.ledger as string | undefined)
    if (values['mark-only'] === true) {
      return withHistoryDatabase(values, io, async (db) => {
        const forgotten = await forgetFailures(db, target.ledger, target.name)
        if (json) printJson(io, { pipeline: target.name, ledger: target.ledger, marked: forgotten })
        else println(io.stdout, `${forgotten} failed keys of pipeline ${target.name} made runnable: the next pgcrew run does them`)
        return 0
      })
    }
    if (!target.def) throw new UsageError(`retry --failed runs the pipeline: give its module, not the name ${JSON.stringify(target.name)} (or add --mark-only)`)
    const def = target.def
    return withHistoryDatabase(values, io, async (db) => {
      const stderrIsTTY = (io.stderr as { isTTY?: boolean }).isTTY === true
      const progress = json ? silentProgress : stderrIsTTY ? barProgress(io.stderr) : lineProgress(io.stderr)
      const { failedBefore, summary } = await retryFailed(db, def.ledger ? def : { ...def, ledger: target.ledger }, { threads, maxFailures, progress, signal: io.signal })
      if (json) printJson(io, { failedBefore, ...summary })
      else {
        println(io.stdout, `retrying ${failedBefore} failed keys of pipeline ${summary.pipeline}`)
        printSummary(io, summary, undefined)
      }
      return summary.cancelled || summary.failed > 0 || summary.stopReason ? 1 : 0
    })
  },
}
