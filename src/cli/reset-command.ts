import { createInterface } from 'node:readline/promises'
import { ledgerCounts, resetLedger } from '../history/ledger-queries.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { UsageError, type CliIO, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, pipelineTarget, withHistoryDatabase } from './cli-history-database.ts'
import { printJson, println } from './cli-output.ts'

/** Ask on the terminal; false when there is no terminal to ask on (then --yes is needed). */
async function confirm(io: CliIO, question: string): Promise<boolean> {
  const stdin = io.stdin as (NodeJS.ReadableStream & { isTTY?: boolean }) | undefined
  if (!stdin || stdin.isTTY !== true) return false
  const rl = createInterface({ input: stdin, output: io.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim())
  } finally {
    rl.close()
  }
}

export const command: Command = {
  name: 'reset',
  summary: "Forget a pipeline's ledger rows (every key runs again next time); its own tables are not touched",
  usage: `pgcrew reset PIPELINE [--yes] [--ledger TABLE] [--profile P] [--url URL] [--as WHO] [--json]

  PIPELINE           a pipeline module, or the pipeline's name in the ledger
  --yes              do it without asking (needed when stdin is not a terminal)
  --ledger TABLE     the ledger table (default: the module's, else pgcrew_ledger)
${HISTORY_CONNECTION_USAGE}`,
  options: { ...HISTORY_CONNECTION_OPTIONS, ledger: { type: 'string' }, yes: { type: 'boolean' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError("reset takes one PIPELINE (a module or the pipeline's name)")
    const target = await pipelineTarget(positionals[0]!, values.ledger as string | undefined)
    return withHistoryDatabase(values, io, async (db) => {
      const { recorded, done, failed } = await ledgerCounts(db, target.ledger, target.name)
      const what = `${recorded} ledger rows of pipeline ${target.name} (${done} done, ${failed} failed) in ${target.ledger}`
      if (recorded > 0 && values.yes !== true && !(await confirm(io, `forget ${what}? Every key runs again next time; the pipeline's own tables are not touched. [y/N] `))) {
        throw new PgcrewError('RESET_NOT_CONFIRMED', `reset would forget ${what}; nothing was changed. Run again with --yes to do it`, { details: { pipeline: target.name, rows: recorded } })
      }
      const forgotten = await resetLedger(db, target.ledger, target.name)
      if (values.json === true) printJson(io, { pipeline: target.name, ledger: target.ledger, forgotten })
      else println(io.stdout, `forgot ${forgotten} ledger rows of pipeline ${target.name}; the next run does every key again`)
      return 0
    })
  },
}
