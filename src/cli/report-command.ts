import { resolve } from 'node:path'
import { writeReport } from '../history/run-report.ts'
import { UsageError, type Command } from './cli-command.ts'
import { HISTORY_CONNECTION_OPTIONS, HISTORY_CONNECTION_USAGE, withHistoryDatabase } from './cli-history-database.ts'
import { printJson, println } from './cli-output.ts'

export const command: Command = {
  name: 'report',
  summary: 'Write a run report: one self-contained HTML file with its facts and charts (opens offline)',
  usage: `pgcrew report RUN --html FILE [--profile P] [--url URL] [--as WHO] [--json]

  RUN                a run id, as pgcrew runs lists them
  --html FILE        where to write the page (every script and style inline: no network needed)
${HISTORY_CONNECTION_USAGE}`,
  options: { ...HISTORY_CONNECTION_OPTIONS, html: { type: 'string' } },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw new UsageError('report takes one RUN id (a number, as pgcrew runs lists them)')
    const file = values.html as string | undefined
    if (!file) throw new UsageError('report needs --html FILE: where to write the page')
    const id = Number(positionals[0])
    return withHistoryDatabase(values, io, async (db) => {
      const data = await writeReport(db, id, file)
      if (values.json === true) printJson(io, { run: id, file: resolve(file), samples: data.times.length, events: data.events.length })
      else println(io.stdout, `wrote the report of run ${id} (${data.run.pipeline}, ${data.run.status}, ${data.times.length} samples) to ${file}`)
      return 0
    })
  },
}
