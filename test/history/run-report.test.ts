// The run report in a real browser (Debian's chromium, driven by playwright-core): a page of a run
// made here opens from a file with no network request, draws every chart with the series and points
// the run recorded (read from the uPlot objects), and is not blank.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, test } from 'node:test'
import { chromium } from 'playwright-core'
import { Database } from '../../src/database/database.ts'
import { definePipeline, runPipeline } from '../../src/pipeline/pipeline.ts'
import { writeReport } from '../../src/history/run-report.ts'
import { cleanEnv, freshDatabase, scratchDir } from '../helpers.ts'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

describe('the run report in a browser', () => {
  test('a report of a real run: self-contained, no network request, every chart with its series and points, not blank', { timeout: 180_000 }, async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: .ci/run installs Debian's chromium (apt-get install chromium)`)
    const { url } = await freshDatabase('histreport')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const def = definePipeline({
      name: 'report',
      worker: new URL('../fixtures/workers/history.ts', import.meta.url),
      setup: async (d) => void (await d.query('CREATE TABLE IF NOT EXISTS history_out (key int PRIMARY KEY)')),
      // Keys 5 and 45 are the slow ones.
      tasks: Array.from({ length: 60 }, (_, i) => ({ key: i + 1, sleepMillis: i + 1 === 5 || i + 1 === 45 ? 1500 : 25, fail: (i + 1) % 20 === 0 })),
    })
    const summary = await runPipeline(db, def, { threads: 2, history: { sampleMillis: 50, slowestTasks: 8 } })
    assert.equal(summary.failed, 3)
    const dir = scratchDir()
    const file = join(dir, 'report.html')
    const data = await writeReport(db, summary.runId!, file)
    assert.ok(data.times.length >= 5, `${data.times.length} samples`)
    const page = readFileSync(file, 'utf8')
    // Self-contained: no src= or href= that would fetch anything.
    assert.doesNotMatch(page, /<(script|link|img)[^>]+(src|href)=/i)

    const context = await chromium.launchPersistentContext(join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1200, height: 900 } })
    try {
      const requests: string[] = []
      context.on('request', (r) => requests.push(r.url()))
      const tab = await context.newPage()
      const errors: string[] = []
      tab.on('pageerror', (e) => errors.push(e.message))
      const href = pathToFileURL(file).href
      await tab.goto(href)
      await tab.waitForSelector('body[data-rendered="true"]', { timeout: 30_000 })
      assert.deepEqual(errors, [])
      assert.deepEqual(
        requests.filter((u) => u !== href),
        [],
        'the page fetched something',
      )
      const charts = await tab.evaluate(() =>
        (globalThis as unknown as { pgcrewCharts: Array<{ id: string; plot: { series: unknown[]; data: unknown[][] } }> }).pgcrewCharts.map((c) => ({
          id: c.id,
          series: c.plot.series.length - 1,
          points: c.plot.data.map((d) => d.length),
        })),
      )
      const n = data.times.length
      const points = (series: number) => Array.from({ length: series + 1 }, () => n)
      assert.deepEqual(charts, [
        // Total and one per worker (2 threads).
        { id: 'throughput', series: 3, points: points(3) },
        { id: 'cumulative', series: 2, points: points(2) },
        { id: 'incidents', series: 2, points: points(2) },
        { id: 'connections', series: 2, points: points(2) },
      ])
      // The charts drew something: the cumulative 'done' line ends at the run's done count.
      const lastDone = await tab.evaluate(() => {
        const c = (globalThis as unknown as { pgcrewCharts: Array<{ id: string; plot: { data: Array<Array<number | null>> } }> }).pgcrewCharts.find((x) => x.id === 'cumulative')!
        return c.plot.data[1]!.at(-1)
      })
      assert.equal(lastDone, 57)
      // The slowest tasks: a table of the 8 kept, the two slow keys first.
      type Cell = { textContent: string | null }
      type Row = { querySelectorAll(selector: string): ArrayLike<Cell> }
      const slowest = await tab.$$eval('table.slowest tbody tr', (rows) => (rows as unknown as Row[]).map((r) => Array.from(r.querySelectorAll('td'), (td) => td.textContent)))
      assert.equal(slowest.length, 8)
      assert.deepEqual(
        slowest
          .slice(0, 2)
          .map((r) => r[0])
          .sort(),
        ['45', '5'],
      )
      // pg_sleep(1.5) counts the server's wall clock, which NTP may slew against the worker's monotonic
      // one (seen: 1,499.1 ms): a margin, still far above the 25 ms tasks.
      assert.ok(
        slowest.slice(0, 2).every((r) => Number(r[1]) >= 1400),
        JSON.stringify(slowest),
      )
      const shot = await tab.screenshot({ fullPage: true })
      const blank = await context.newPage()
      await blank.setContent('<html><body></body></html>')
      const empty = await blank.screenshot({ fullPage: true })
      assert.ok(shot.length > 5 * empty.length, `screenshot of ${shot.length} bytes, a blank page ${empty.length}`)
    } finally {
      await context.close()
    }
  })
})
