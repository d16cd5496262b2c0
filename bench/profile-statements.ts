// One statement side on its own, for profiling and client CPU per statement:
// node .tmp/bench-build/bench/profile-statements.js CLIENT KIND [CONNECTIONS]
// CLIENT: pgcrew | pg.Pool | postgres.js; KIND: read | select1 | write. BENCH_MS (default 5000).
// BENCH_URL: use that server instead of a throwaway one; BENCH_PROFILE=FILE: a .cpuprofile of the timed window only.
// Like the bench's children, it warms every kind first, so pgcrew's transactions' storage is in use.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import pg from 'pg'
import { startTempCluster } from '../src/cluster/temp-cluster.ts'
import { openSide, STATEMENT_KINDS, statementRate, type Client, type StatementKind } from './statements.ts'
import { DURABLE_SETTINGS, TABLES_SQL } from './workload.ts'
import { benchSetting } from './settings.ts'

const client = (process.argv[2] ?? 'pgcrew') as Client
const kind = ({ read: 'point read', select1: 'SELECT 1', write: 'write transaction' } as Record<string, StatementKind>)[process.argv[3] ?? 'read']!
const connections = Number(process.argv[4] ?? 4)
const ms = benchSetting('BENCH_MS', 5000)
const cluster = process.env.BENCH_URL ? undefined : await startTempCluster({ settings: DURABLE_SETTINGS })
const url = process.env.BENCH_URL ?? cluster!.url
const setup = new pg.Client({ connectionString: url })
await setup.connect()
const exists = await setup.query(`SELECT to_regclass('bench_items') IS NOT NULL AS e`)
if (!exists.rows[0].e) for (const sql of TABLES_SQL) await setup.query(sql)
await setup.end()
const side = await openSide(url, client, connections)
const session = process.env.BENCH_PROFILE ? new Session() : undefined
try {
  for (const k of STATEMENT_KINDS) await statementRate(side, k, connections, 300, 3)
  await statementRate(side, kind, connections, 1000, 3)
  if (session) {
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.start')
  }
  const cpu0 = process.cpuUsage()
  const t = performance.now()
  const rate = await statementRate(side, kind, connections, ms, 11)
  const cpu = process.cpuUsage(cpu0)
  if (session) writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify((await session.post('Profiler.stop')).profile))
  const n = rate * ((performance.now() - t) / 1000)
  console.log(
    `${client} ${kind} ×${connections}: ${Math.round(rate)}/s, client CPU ${((cpu.user + cpu.system) / n).toFixed(1)} µs/statement (user ${(cpu.user / n).toFixed(1)}, sys ${(cpu.system / n).toFixed(1)})`,
  )
} finally {
  await side.close()
  await cluster?.stop()
}
