// `pgcrew report RUN --html FILE`: one self-contained HTML page of a run — its facts, and charts on
// one time axis (throughput total and per worker, cumulative done and failed, retries and server
// outages, connections in use against the budget) drawn by uPlot, and its slowest tasks, whose script and style are inlined
// so the page opens from a file with no network at all. Samples are thinned to at most ~3,600 per run
// (run-samples.ts), so a 10-hour run is a few hundred kilobytes and stays zoomable (drag to zoom,
// double-click to reset).
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { qname } from '../toolkit/quote.ts'
import { getRun, runForJson, threadsText } from './run-list.ts'
import { HISTORY_DEFAULTS } from './run-recorder.ts'
import type { RunRecord } from './run-record.ts'

/** What the page draws: the run, its samples by series (times in epoch seconds), its events. */
export interface ReportData {
  run: ReturnType<typeof runForJson>
  /** Sample times, epoch seconds, oldest first. */
  times: number[]
  /** Each series' value at each sample time (null where a sample lacks it). */
  series: Record<string, Array<number | null>>
  events: Array<{ at: number; severity: string; description: string; kind: string | null }>
  budget: number | null
}

/** Read a run's facts, samples and events from the store. */
export async function reportData(db: Database, runId: number, options: { schema?: string } = {}): Promise<ReportData> {
  const schema = options.schema ?? HISTORY_DEFAULTS.schema
  const run: RunRecord | undefined = await getRun(db, runId, { schema })
  if (!run) throw new PgcrewError('RUN_NOT_FOUND', `there is no run ${runId} in the run history; pgcrew runs lists them`, { details: { run: runId } })
  const { rows } = await db.query<{ series: string; value: number; at: Date }>(`SELECT series, value, at FROM ${qname(schema, 'readings')} WHERE session_id = $1 ORDER BY at, series`, [runId])
  const index = new Map<number, number>()
  const times: number[] = []
  for (const r of rows) {
    const t = r.at.getTime()
    if (!index.has(t)) {
      index.set(t, times.length)
      times.push(t / 1000)
    }
  }
  const series: ReportData['series'] = {}
  for (const r of rows) (series[r.series] ??= new Array<number | null>(times.length).fill(null))[index.get(r.at.getTime())!] = r.value
  const ev = await db.query<{ at: Date; severity: string; description: string; kind: string | null }>(
    `SELECT at, severity, description, data->>'kind' AS kind FROM ${qname(schema, 'events')} WHERE session_id = $1 ORDER BY at, id`,
    [runId],
  )
  return {
    run: runForJson(run),
    times,
    series,
    events: ev.rows.map((e) => ({ at: e.at.getTime() / 1000, severity: e.severity, description: e.description, kind: e.kind })),
    budget: run.connections,
  }
}

const require = createRequire(import.meta.url)
const asset = (file: string): string => readFileSync(require.resolve(`uplot/dist/${file}`), 'utf8')

/** JSON safe inside a <script> element: no `</script>` or `<!--` can end it early. */
const scriptJson = (value: unknown): string => JSON.stringify(value).replace(/</g, '\\u003c')
const html = (text: string): string => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

// The page's own script: builds the charts from the JSON, and leaves them on window.pgcrewCharts
// (name, series count, points) for whoever checks the page.
const PAGE_SCRIPT = `
const data = JSON.parse(document.getElementById('pgcrew-data').textContent);
const t = data.times, S = data.series;
const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const pace = (ys) => ys.map((y, i) => (i === 0 || y == null || ys[i - 1] == null || t[i] === t[i - 1]) ? null : Math.max(0, (y - ys[i - 1]) / (t[i] - t[i - 1])));
const workers = Object.keys(S).filter((k) => /^worker\\.\\d+\\.done$/.test(k)).sort((a, b) => parseInt(a.split('.')[1]) - parseInt(b.split('.')[1]));
const orZero = (k) => S[k] || t.map(() => 0);
const charts = [
  { id: 'throughput', title: 'Throughput (tasks/s), total and per worker', series: [['total', pace(orZero('run.done'))], ...workers.map((w) => ['worker #' + w.split('.')[1], pace(S[w])])] },
  { id: 'cumulative', title: 'Done and failed, cumulative', series: [['done', orZero('run.done')], ['failed', orZero('run.failed')]] },
  { id: 'incidents', title: 'Retries (cumulative) and server unreachable (1 = unreachable)', series: [['retried', orZero('run.retried')], ['unreachable', orZero('run.unreachable')]] },
  { id: 'connections', title: 'Connections in use against the budget', series: [['in use', orZero('run.connections')], ['budget', t.map(() => data.budget)]] },
];
window.pgcrewCharts = [];
const width = () => Math.min(1100, document.body.clientWidth - 32);
for (const c of charts) {
  const el = document.getElementById(c.id);
  const opts = {
    title: c.title, width: width(), height: 240,
    scales: { x: { time: true } },
    cursor: { drag: { x: true, y: false } },
    series: [{}, ...c.series.map(([label], i) => ({ label, stroke: colors[i % colors.length], width: 1.5, spanGaps: true, paths: label === 'unreachable' ? uPlot.paths.stepped({ align: 1 }) : undefined }))],
    axes: [{}, { size: 60 }],
  };
  const plot = new uPlot(opts, [t, ...c.series.map(([, ys]) => ys)], el);
  window.pgcrewCharts.push({ id: c.id, plot });
}
window.addEventListener('resize', () => window.pgcrewCharts.forEach(({ plot }) => plot.setSize({ width: width(), height: 240 })));
document.body.dataset.rendered = 'true';
`

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 24px 0 8px; }
table.facts td { padding: 1px 12px 1px 0; vertical-align: top; } table.facts td:first-child { color: #666; }
.chart { margin: 12px 0; } .events { font-family: ui-monospace, monospace; font-size: 12px; }
table.slowest { border-collapse: collapse; font-size: 13px; } table.slowest th, table.slowest td { padding: 2px 12px 2px 0; text-align: left; }
table.slowest td:nth-child(2) { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #b00; } .warning { color: #a60; } .note { color: #666; }
`

/** The report page of a run, self-contained. */
export function renderReport(data: ReportData): string {
  const r = data.run
  const s = r.summary
  const facts: Array<[string, string | number | null | undefined]> = [
    ['pipeline', r.pipeline],
    ['status', r.status + (r.reason ? ` — ${r.reason}` : '')],
    ['host', `${r.host ?? '?'} (pid ${r.pid ?? '?'})`],
    ['role / database', `${r.role ?? '?'} / ${r.database ?? '?'}`],
    ['threads', threadsText(r)],
    ['started', r.startedAt.toISOString()],
    ['ended', r.endedAt?.toISOString() ?? 'still running'],
    ['duration', `${(r.durationMillis / 1000).toFixed(1)} s`],
    ['tasks', s ? `${s.seen} seen, ${s.done} done, ${s.skipped} skipped, ${s.failed} failed, ${s.retried} retried` : null],
    ['rate', s ? `${s.tasksPerSecond} tasks/s` : null],
    ['budget', s ? s.budgetExplanation : null],
    ['samples', `${data.times.length}`],
  ]
  const events = data.events.slice(0, 200)
  const when = (sec: number) => new Date(sec * 1000).toISOString().slice(11, 19)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>pgcrew run ${r.id} — ${html(r.pipeline)}</title>
<style>${asset('uPlot.min.css')}</style><style>${STYLE}</style></head>
<body>
<h1>pgcrew run ${r.id}: ${html(r.pipeline)}</h1>
<table class="facts">${facts
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `<tr><td>${html(k)}</td><td>${html(String(v))}</td></tr>`)
    .join('')}</table>
<h2>Over time</h2>
<p class="note">Drag across a chart to zoom in on a stretch of the run; double-click to see all of it again.</p>
<div class="chart" id="throughput"></div><div class="chart" id="cumulative"></div><div class="chart" id="incidents"></div><div class="chart" id="connections"></div>
<h2>Slowest tasks (${r.slowest.length})</h2>
${
  r.slowest.length
    ? `<table class="slowest"><thead><tr><th>key</th><th>ms</th><th>worker</th></tr></thead><tbody>${r.slowest
        .map((t) => `<tr><td>${html(t.key)}</td><td>${t.millis.toFixed(1)}</td><td>#${t.worker}</td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="note">None recorded (no task was done, or the run was recorded by an older pgcrew).</p>'
}
<h2>Events (${data.events.length})</h2>
<div class="events">${events.map((e) => `<div class="${html(e.severity)}">${when(e.at)} ${html(e.severity)} ${html(e.description)}</div>`).join('') || 'none'}${
    data.events.length > events.length ? `<div>… and ${data.events.length - events.length} more</div>` : ''
  }</div>
<script id="pgcrew-data" type="application/json">${scriptJson(data)}</script>
<script>${asset('uPlot.iife.min.js')}</script>
<script>${PAGE_SCRIPT}</script>
</body></html>
`
}

/** Write the report of run `runId` to `file`; resolves to the data drawn. */
export async function writeReport(db: Database, runId: number, file: string, options: { schema?: string } = {}): Promise<ReportData> {
  const data = await reportData(db, runId, options)
  writeFileSync(file, renderReport(data))
  return data
}
