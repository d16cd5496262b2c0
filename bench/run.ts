// npm run bench — the pipeline the speed issue (#11) describes, run by a hand-written loop, by pgcrew and by
// pgbench, interleaved; statement-level rows against pg.Pool and postgres.js; COPY against psql; memory.
//
// Each section runs its sides in turn inside each of BENCH_REPS repetitions (order reversed on odd reps);
// a ratio is taken within each repetition and the median of those is reported, so slow drift of a shared
// machine cancels out. CPU per task is user+sys of the client (process.cpuUsage covers every thread; a
// child's from /proc/self/stat cutime) and of the bench's own PostgreSQL (its postmaster's children).
// npm run bench compiles pgcrew first (bench/tsconfig.json) and runs the JavaScript, as users do.
// Short runs while developing: BENCH_ONLY=pipeline,heavy,distributed,statements,bulk,memory BENCH_REPS BENCH_TASKS
// BENCH_DISTRIBUTED_TASKS BENCH_HEAVY_TASKS BENCH_MS BENCH_STATEMENT_REPS BENCH_COPY_ROWS BENCH_MEMORY_TASKS.
// BENCH_ONLY=store (not in the default set) measures the record store's addMany against copyFrom,
// BENCH_STORE_ROWS rows (100,000).
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Database } from '../src/database/database.ts'
import { ensureLedger } from '../src/pipeline/pipeline-ledger.ts'
import { startTempCluster, type TempCluster } from '../src/cluster/temp-cluster.ts'
import { findPsql, viaCopyFrom, viaPsql, writeCopyFile } from './bulk.ts'
import { measureCores } from './cores.ts'
import { cpuUsed, findPostmaster, readCpu, type CpuUsed } from './cpu.ts'
import { measureMemory, memoryChild, type MemoryResult } from './memory.ts'
import { viaDistributed } from './distributed-side.ts'
import { findPgbench, pgbenchScript, viaPgbench, viaPipeline } from './pipeline-sides.ts'
import { handProcesses } from './hand-processes.ts'
import { STATEMENT_KINDS, statementChild, type Client, type StatementChild } from './statements.ts'
import { DURABLE_SETTINGS, HEAVY_ROUNDS, LIGHT_ROUNDS, TABLES_SQL } from './workload.ts'
import { openBenchStores, storeRows, viaAddMany, viaAddManyCount, viaCopyRows } from './store.ts'
import { benchSections, benchSetting } from './settings.ts'

const env = (name: string, fallback: number): number => benchSetting(name, fallback)
const REPS = env('BENCH_REPS', 3)
// The defaults keep a full run under the issue's 10 minutes on a 2-core machine (644–888 s before they
// were trimmed from 20,000 light tasks, 20,000 distributed and 1500 ms per statement measurement).
const TASKS = env('BENCH_TASKS', 12_000)
const DISTRIBUTED_TASKS = env('BENCH_DISTRIBUTED_TASKS', 10_000)
const HEAVY_TASKS = env('BENCH_HEAVY_TASKS', 3_000)
// Statements: more, shorter repetitions than the pipelines (7 × 500 ms against 3 × 1500 ms before): this
// machine changes speed within seconds, and the median of 7 ratios of neighbouring windows is steadier.
const STATEMENT_MS = env('BENCH_MS', 500)
const STATEMENT_REPS = env('BENCH_STATEMENT_REPS', 7)
const COPY_ROWS = env('BENCH_COPY_ROWS', 1_000_000)
const MEMORY_TASKS = env('BENCH_MEMORY_TASKS', 2_000_000)
const STORE_ROWS = env('BENCH_STORE_ROWS', 100_000)
const MEMORY_FRESH = Math.min(env('BENCH_MEMORY_FRESH', 20_000), MEMORY_TASKS)
const ONLY = benchSections('BENCH_ONLY', ['pipeline', 'heavy', 'distributed', 'statements', 'bulk', 'memory', 'store'], ['pipeline', 'heavy', 'distributed', 'statements', 'bulk', 'memory'])
const CORES = availableParallelism()
const TWO_HAND_WARM = 'hand loop, 2 processes × 2, warmed'
const TWO_HAND_COLD = 'hand loop, 2 processes × 2, cold'

interface Sample {
  rate: number
  cpu?: CpuUsed
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const range = (xs: number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`
const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')

/**
 * A side of a measurement; `mark()` restarts the CPU window where the side starts its own clock (the
 * pipeline at its first task). A side whose client is in child processes that outlive nothing of the
 * window (the hand loops in processes of their own) returns their CPU over it itself, in seconds.
 */
type Side = { name: string; run: (rep: number, mark: () => void) => Promise<number | { rate: number; clientCpu: number }>; child?: boolean }

/** Runs sides in turn, `reps` times, alternating the order; collects a sample per side per rep. */
async function interleave(sides: Side[], postmaster: number | undefined, reps = REPS): Promise<Map<string, Sample[]>> {
  const out = new Map<string, Sample[]>(sides.map((s) => [s.name, []]))
  for (let rep = 0; rep < reps; rep++) {
    for (const side of rep % 2 ? [...sides].reverse() : sides) {
      // The CPU window must be the rate's window: CPU per task is CPU / (rate × seconds).
      let before = readCpu(postmaster)
      let t = performance.now()
      const mark = (): void => {
        before = readCpu(postmaster)
        t = performance.now()
      }
      const result = await side.run(rep, mark)
      const rate = typeof result === 'number' ? result : result.rate
      const used = cpuUsed(before, readCpu(postmaster), (performance.now() - t) / 1000, side.child)
      const cpu = used && typeof result !== 'number' ? { ...used, client: result.clientCpu } : used
      out.get(side.name)!.push({ rate, cpu })
      process.stderr.write(`  rep ${rep + 1}/${reps} ${side.name}: ${f0(rate)}/s${cpu ? `, client CPU ${f0((cpu.client / (rate * cpu.seconds)) * 1e6)} µs/task` : ''}\n`)
    }
  }
  return out
}

/** Per-rep ratio b/a of rates, median (min–max). */
function ratio(samples: Map<string, Sample[]>, a: string, b: string): string {
  const as = samples.get(a)!
  const rs = samples.get(b)!.map((s, i) => s.rate / as[i]!.rate)
  return `${median(rs).toFixed(2)}× (${range(rs, 2)})`
}

/** Per-rep ratios b/a of rates. */
const ratios = (samples: Map<string, Sample[]>, a: string, b: string): number[] => samples.get(b)!.map((s, i) => s.rate / samples.get(a)![i]!.rate)

/** One of issue #11's targets with what this run measured, for the table at the end. */
interface TargetRow {
  target: string
  /** The median, and what it is compared against the goal by. */
  value: number
  detail: string
  goal: number
  /** 'min': value ≥ goal; 'max': value ≤ goal. */
  kind: 'min' | 'max'
  unit: string
}

/** Client CPU per unit in µs: median over reps. */
const perUnit = (samples: Sample[], which: 'client' | 'postgres'): number => median(samples.map((s) => (s.cpu ? (s.cpu[which] / (s.rate * s.cpu.seconds)) * 1e6 : NaN)))

/**
 * Before a section: what the sections before it left to the server (dead rows of the counter updates,
 * unvacuumed inserts, dirty buffers) is cleaned up now rather than by autovacuum and the checkpointer
 * during the next section's measurement, where it would take CPU from whichever side ran then. VACUUM
 * ANALYZE of the bench's database, a CHECKPOINT, then up to 30 s for autovacuum workers still running.
 * (Measured: 0.3–0.5 s after the light section; the CPU-heavy section's ratios moved within run-to-run
 * noise with and without it, so this is hygiene, not a lever.)
 */
async function settle(pool: pg.Pool): Promise<void> {
  const t = performance.now()
  await pool.query('VACUUM ANALYZE')
  await pool.query('CHECKPOINT')
  let running = 0
  for (let i = 0; i < 150; i++) {
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
    running = rows[0]!.n
    if (running === 0) break
    await new Promise((r) => setTimeout(r, 200))
  }
  const seconds = ((performance.now() - t) / 1000).toFixed(1)
  process.stderr.write(running ? `  ${running} autovacuum worker(s) still running after ${seconds} s: measuring anyway\n` : `  settled the server in ${seconds} s\n`)
}

async function main(): Promise<void> {
  const t0 = performance.now()
  const loadBefore = loadavg()[0]!
  const lines: string[] = []
  const say = (line = ''): void => {
    lines.push(line)
    console.log(line)
  }
  const targets: TargetRow[] = []
  const aim = (target: string, xs: number[], goal: number, kind: 'min' | 'max' = 'min', digits = 2): void => {
    const m = median(xs)
    targets.push({ target, value: m, detail: `${m.toFixed(digits)}× (${xs.length > 1 ? range(xs, digits) : 'one run'})`, goal, kind, unit: '×' })
  }
  // Durable settings, as a real server has them (the test clusters turn fsync off).
  const cluster: TempCluster = await startTempCluster({ settings: DURABLE_SETTINGS })
  const postmaster = findPostmaster(cluster.port)
  const dir = mkdtempSync(join(tmpdir(), 'pgcrew-bench-'))
  const dbname = `pgcrew_bench_${randomBytes(4).toString('hex')}`
  const url = new URL(cluster.url)
  url.pathname = '/' + dbname
  const admin = new pg.Client({ connectionString: cluster.url })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${dbname}`)
  const pool = new pg.Pool({ connectionString: url.href, max: 4 })
  pool.on('error', () => {})
  const db = new Database({ connectionString: url.href, max: 1 })
  try {
    for (const sql of TABLES_SQL) await pool.query(sql)
    await pool.query('VACUUM ANALYZE bench_items')
    await db.connect()
    await ensureLedger(db, 'pgcrew_ledger')
    const server = (await pool.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v
    const pgbench = findPgbench(cluster.bindir)
    say(`# pgcrew benchmarks`)
    say()
    say(
      `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC — node ${process.version}, ${CORES} cores (${cpus()[0]?.model ?? 'unknown cpu'}), ${Math.round(totalmem() / 2 ** 30)} GB; PostgreSQL ${server} (throwaway cluster, ${cluster.source} binaries, fsync/synchronous_commit/full_page_writes on) on the same machine; pgcrew compiled to JavaScript.`,
    )
    say(
      `${REPS} interleaved repetitions (the statement level ${STATEMENT_REPS}); a ratio is taken within each repetition, then the median (min–max) of those. Before each section the bench's database is vacuumed and checkpointed, so a section does not pay for the one before it. CPU is user+sys per task: the client's (all its threads) and the bench's own PostgreSQL server's.`,
    )
    say()

    const pipelineSection = async (title: string, count: number, rounds: number, withPgbench: boolean, heavy = false): Promise<void> => {
      const sides: Side[] = [
        // In a process of its own, as a user's script runs: in this one, pgcrew's transactions have put an
        // AsyncLocalStorage in use, and on Node 20 that slows every promise of the process (1.09–1.11× the
        // loop's client CPU per task, bench/async-context.ts), a cost a hand-written loop does not have.
        {
          name: 'hand loop',
          run: async (rep, mark) => {
            const r = await handProcesses(url.href, `hand-${rounds}-${rep}`, count, 100 + rep, rounds, 1, 4, mark)
            return { rate: r.rate, clientCpu: r.cpu }
          },
        },
        { name: 'pgcrew 2×2', run: (rep, mark) => viaPipeline(db, `crew22-${rounds}-${rep}`, count, 100 + rep, rounds, { threads: 2, perWorkerConnections: 2 }, mark) },
        { name: 'pgcrew 1×4', run: (rep, mark) => viaPipeline(db, `crew14-${rounds}-${rep}`, count, 100 + rep, rounds, { threads: 1, perWorkerConnections: 4 }, mark) },
        // No worker thread: the one worker in this process (inProcess), 4 connections.
        { name: 'pgcrew in-process ×4', run: (rep, mark) => viaPipeline(db, `crewin-${rounds}-${rep}`, count, 100 + rep, rounds, { inProcess: true, perWorkerConnections: 4 }, mark) },
        // threads: 'auto': one thread of 4 connections, another (up to every core) while those in use are CPU-bound.
        { name: 'pgcrew auto', run: (rep, mark) => viaPipeline(db, `crewauto-${rounds}-${rep}`, count, 100 + rep, rounds, { threads: 'auto' }, mark) },
      ]
      // What two cores give by hand: the loop in two processes, 2 connections each, half the tasks each;
      // warmed and started together, and (CPU-heavy) started cold (timed from the fork, as pgcrew's threads
      // start inside its time). On light tasks the warmed pair is the by-hand counterpart of pgcrew 2×2.
      sides.splice(
        1,
        0,
        ...(heavy ? [TWO_HAND_WARM, TWO_HAND_COLD] : [TWO_HAND_WARM]).map((name): Side => ({
          name,
          run: async (rep, mark) => {
            const r = await handProcesses(url.href, `hand2${name === TWO_HAND_WARM ? 'w' : 'c'}-${rounds}-${rep}`, count, 100 + rep, rounds, 2, 2, mark, name === TWO_HAND_WARM)
            return { rate: r.rate, clientCpu: r.cpu }
          },
        })),
      )
      if (withPgbench && pgbench) sides.push({ name: 'pgbench', child: true, run: (rep) => viaPgbench(pgbench, url, pgbenchScript(dir, `pgbench_${rounds}_${rep}`), count) })
      // Warm-up: threads, plans, caches.
      await viaPipeline(db, `warm-crew-${rounds}`, Math.min(500, count), 7, rounds, { threads: 2, perWorkerConnections: 2 })
      await viaPipeline(db, `warm-crewin-${rounds}`, Math.min(500, count), 7, rounds, { inProcess: true, perWorkerConnections: 4 })
      await settle(pool)
      const s = await interleave(sides, postmaster)
      say(`## ${title}`)
      say()
      say('| side | tasks/s median (min–max) | vs hand loop | client CPU µs/task | vs hand loop | PostgreSQL CPU µs/task |')
      say('|---|---:|---:|---:|---:|---:|')
      const loopCpu = perUnit(s.get('hand loop')!, 'client')
      for (const [name, samples] of s) {
        const rates = samples.map((x) => x.rate)
        const cpu = perUnit(samples, 'client')
        say(
          `| ${name} | ${f0(median(rates))} (${range(rates, 0)}) | ${name === 'hand loop' ? '1' : ratio(s, 'hand loop', name)} | ${f0(cpu)} | ${name === 'hand loop' ? '1' : (cpu / loopCpu).toFixed(2) + '×'} | ${f0(perUnit(samples, 'postgres'))} |`,
        )
      }
      if (withPgbench && !pgbench) say(`| pgbench | skipped: no pgbench binary (looked in ${cluster.bindir} and the usual places) | | | | |`)
      // What more cores alone could give at the loop's cost per task: cores / cores the loop kept busy.
      const ceilings = s.get('hand loop')!.flatMap((x) => (x.cpu ? [CORES / ((x.cpu.client + x.cpu.postgres) / x.cpu.seconds)] : []))
      const machine = s.get('hand loop')!.flatMap((x) => (x.cpu ? [x.cpu.machine / x.cpu.seconds] : []))
      say()
      say(
        `Ceiling: ${CORES} cores / the cores the hand loop kept busy (its process + its server) = ${median(ceilings).toFixed(2)}× (${ceilings.length ? range(ceilings, 2) : 'n/a'}); ` +
          `the whole machine was ${median(machine).toFixed(2)} of ${CORES} cores busy during the hand loop (other load included).`,
      )
      say()
      const cpuVs = (a: string, b: string): string => {
        const x = perUnit(s.get(b)!, 'client') / perUnit(s.get(a)!, 'client')
        return Number.isFinite(x) ? x.toFixed(2) : 'n/a'
      }
      if (!heavy) {
        say(
          `By hand on two cores: the loop in two processes of 2 connections each, half the tasks each, warmed before the clock, gives ${ratio(s, 'hand loop', TWO_HAND_WARM)} the one loop at ${cpuVs('hand loop', TWO_HAND_WARM)}× its client CPU per task: ` +
            `what splitting the work over two event loops of 2 connections costs without pgcrew. pgcrew 2×2 gives ${ratio(s, TWO_HAND_WARM, 'pgcrew 2×2')} the two processes at ${cpuVs(TWO_HAND_WARM, 'pgcrew 2×2')}× their CPU per task.`,
        )
        say()
      }
      if (heavy) {
        // The ceiling assumes a core is as fast while the other one is busy: measure that (no database).
        const cores = await measureCores()
        if (cores) {
          const factor = cores.together / cores.alone
          // Information beside the target, not a second target: the target row keeps the ceiling above.
          const slower = median(ceilings) / factor
          say(
            `Two cores at once: the task's JavaScript alone (no database) takes ${cores.alone.toFixed(2)} ms of CPU per task in one worker thread, ${cores.together.toFixed(2)} ms in each of two threads running at once (${factor.toFixed(2)}×), ` +
              `and ${cores.processes.toFixed(2)} ms in each of two processes running at once (${(cores.processes / cores.alone).toFixed(2)}×). ` +
              `In tasks per second: ${f0(cores.rates.alone)} in one thread, ${f0(cores.rates.threads)} in two threads together, ${f0(cores.rates.processes)} in two processes together: two threads give ${(cores.rates.threads / cores.rates.processes).toFixed(2)}× what two processes give (bench/cores.ts). ` +
              (factor > 1.02
                ? `With a core that much slower while the other is busy, the ceiling would be ${slower.toFixed(2)}×, and pgcrew 2×2 ${(median(ratios(s, 'hand loop', 'pgcrew 2×2')) / slower).toFixed(2)} of it.`
                : 'A core is no slower while the other is busy here: the ceiling above stands.'),
          )
        }
        say()
        say(
          `By hand on two cores: the loop in two processes of 2 connections each, half the tasks each, gives ${ratio(s, 'hand loop', TWO_HAND_WARM)} the one loop at ${cpuVs('hand loop', TWO_HAND_WARM)}× its client CPU per task when the processes are warmed before the clock, ` +
            `and ${ratio(s, 'hand loop', TWO_HAND_COLD)} at ${cpuVs('hand loop', TWO_HAND_COLD)}× when they start cold (timed from the fork: start, imports, connections and the JIT's warm-up inside the time, as pgcrew's threads have theirs). ` +
            `pgcrew 2×2 gives ${ratio(s, TWO_HAND_WARM, 'pgcrew 2×2')} the warmed processes at ${cpuVs(TWO_HAND_WARM, 'pgcrew 2×2')}× their CPU per task, and ${ratio(s, TWO_HAND_COLD, 'pgcrew 2×2')} the cold ones at ${cpuVs(TWO_HAND_COLD, 'pgcrew 2×2')}×.`,
        )
        say()
      }
      const what = heavy ? 'CPU-heavy' : 'light'
      const cpuOf = (name: string): number[] =>
        s.get(name)!.map((x, i) => {
          const loop = s.get('hand loop')![i]!
          return x.cpu && loop.cpu ? x.cpu.client / (x.rate * x.cpu.seconds) / (loop.cpu.client / (loop.rate * loop.cpu.seconds)) : NaN
        })
      if (heavy) {
        aim(`pipeline ${what}, pgcrew 2×2 vs hand loop`, ratios(s, 'hand loop', 'pgcrew 2×2'), 1.4)
        aim(`pipeline ${what}, pgcrew auto vs hand loop`, ratios(s, 'hand loop', 'pgcrew auto'), 1.4)
        const ofCeiling = s.get('pgcrew 2×2')!.map((x, i) => {
          const loop = s.get('hand loop')![i]!
          return loop.cpu ? x.rate / loop.rate / (CORES / ((loop.cpu.client + loop.cpu.postgres) / loop.cpu.seconds)) : NaN
        })
        aim(`pipeline ${what}, pgcrew 2×2 vs hand loop, as a share of the ceiling`, ofCeiling, 0.9)
      } else {
        for (const side of ['pgcrew 2×2', 'pgcrew 1×4', 'pgcrew in-process ×4', 'pgcrew auto']) {
          aim(`pipeline ${what}, ${side} vs hand loop`, ratios(s, 'hand loop', side), 1.2)
          if (s.has('pgbench')) aim(`pipeline ${what}, ${side} vs pgbench`, ratios(s, 'pgbench', side), 0.6)
        }
      }
      for (const side of ['pgcrew 2×2', 'pgcrew 1×4', 'pgcrew in-process ×4', 'pgcrew auto']) aim(`pipeline ${what}, ${side} client CPU per task vs hand loop`, cpuOf(side), 1.1, 'max')
    }

    // Where the bench's time goes, section by section, for the last line of BENCHMARKS.md.
    const took: string[] = []
    let lapAt = performance.now()
    const lap = (section: string): void => {
      const now = performance.now()
      took.push(`${section} ${((now - lapAt) / 1000).toFixed(0)} s`)
      lapAt = now
    }
    if (ONLY.has('pipeline')) {
      await pipelineSection(`Pipeline, light task (${TASKS.toLocaleString('en-US')} tasks; read, ${LIGHT_ROUNDS} sha256 rounds, insert, update; ledger claim first)`, TASKS, LIGHT_ROUNDS, true)
      lap('light pipeline')
    }
    if (ONLY.has('heavy')) {
      await pipelineSection(`Pipeline, CPU-heavy task (${HEAVY_TASKS.toLocaleString('en-US')} tasks; ${HEAVY_ROUNDS} sha256 rounds ≈ 2 ms of JavaScript each)`, HEAVY_TASKS, HEAVY_ROUNDS, false, true)
      lap('CPU-heavy pipeline')
    }

    if (ONLY.has('distributed')) {
      // One machine: a local run against --distributed of the same pipeline (the queue's cost per task).
      const options = { threads: 2, perWorkerConnections: 2 }
      await viaDistributed(db, 'warm-distributed', Math.min(500, DISTRIBUTED_TASKS), 7, LIGHT_ROUNDS, options)
      await settle(pool)
      const s = await interleave(
        [
          { name: 'pgcrew run 2×2', run: (rep, mark) => viaPipeline(db, `local-${rep}`, DISTRIBUTED_TASKS, 300 + rep, LIGHT_ROUNDS, options, mark) },
          { name: 'pgcrew run --distributed 2×2', run: (rep) => viaDistributed(db, `distributed-${rep}`, DISTRIBUTED_TASKS, 300 + rep, LIGHT_ROUNDS, options) },
        ],
        postmaster,
      )
      say(`## One machine, local against --distributed (${DISTRIBUTED_TASKS.toLocaleString('en-US')} light tasks, 20 per job; load ${loadavg()[0]!.toFixed(1)} at the end)`)
      say()
      say('| side | tasks/s median (min–max) | vs local | client CPU µs/task |')
      say('|---|---:|---:|---:|')
      for (const [name, samples] of s) {
        const rates = samples.map((x) => x.rate)
        say(`| ${name} | ${f0(median(rates))} (${range(rates, 0)}) | ${name === 'pgcrew run 2×2' ? '1' : ratio(s, 'pgcrew run 2×2', name)} | ${f0(perUnit(samples, 'client'))} |`)
      }
      say()
      lap('distributed')
    }

    if (ONLY.has('statements')) {
      await settle(pool)
      say(`## Statement level (${STATEMENT_REPS} interleaved repetitions of ${STATEMENT_MS} ms per measurement, one async loop per connection; each client in a process of its own)`)
      say()
      say('| statement | connections | pgcrew db.query/transaction /s | pg.Pool (named statements) /s | postgres.js /s | pgcrew vs pg.Pool | pgcrew vs postgres.js |')
      say('|---|---:|---:|---:|---:|---:|---:|')
      for (const connections of [4, 8]) {
        // Each client in a process of its own (statements.ts: why), started once per connection count.
        const clients: Client[] = ['pgcrew', 'pg.Pool', 'postgres.js']
        const children = new Map<Client, StatementChild>()
        try {
          for (const c of clients) children.set(c, await statementChild(url.href, c, connections))
          for (const kind of STATEMENT_KINDS) {
            const s = await interleave(
              clients.map((c) => ({ name: c, run: (rep: number) => children.get(c)!.rate(kind, STATEMENT_MS, 11 + rep) })),
              postmaster,
              STATEMENT_REPS,
            )
            const m = (n: string): string => f0(median(s.get(n)!.map((x) => x.rate)))
            if (kind === 'point read') aim(`statement, point read at ${connections} connections, pgcrew vs postgres.js`, ratios(s, 'postgres.js', 'pgcrew'), 1.0)
            else aim(`statement, ${kind} at ${connections} connections, pgcrew vs pg.Pool`, ratios(s, 'pg.Pool', 'pgcrew'), 0.97)
            say(`| ${kind} | ${connections} | ${m('pgcrew')} | ${m('pg.Pool')} | ${m('postgres.js')} | ${ratio(s, 'pg.Pool', 'pgcrew')} | ${ratio(s, 'postgres.js', 'pgcrew')} |`)
          }
        } finally {
          await Promise.all([...children.values()].map((child) => child.close()))
        }
      }
      say()
      lap('statements')
    }

    if (ONLY.has('bulk')) {
      const psql = findPsql(cluster.bindir)
      const file = await writeCopyFile(dir, COPY_ROWS)
      say(`## Bulk load (${COPY_ROWS.toLocaleString('en-US')} rows, one COPY text file)`)
      say()
      if (!psql) say(`psql not found: only copyFrom measured`)
      const copyDb = new Database({ connectionString: url.href, max: 1 })
      await copyDb.connect()
      try {
        // CPU per row: copyFrom's is the bench process's own, psql's that of the waited-for child.
        const sides: Side[] = [{ name: 'copyFrom', run: (_rep, mark) => viaCopyFrom(copyDb, file, COPY_ROWS, mark) }]
        if (psql) sides.push({ name: 'psql \\copy', child: true, run: (_rep, mark) => viaPsql(psql, url, file, COPY_ROWS, copyDb, mark) })
        // Warm-up, as every other section has: without it the section's first COPY (copyFrom's) ran at 0.6–0.75× the later ones.
        for (const side of sides) await side.run(0, () => {})
        await settle(pool)
        const s = await interleave(sides, postmaster)
        if (psql) aim(`bulk, copyFrom of ${COPY_ROWS.toLocaleString('en-US')} rows vs psql \\copy`, ratios(s, 'psql \\copy', 'copyFrom'), 1.0)
        say('| side | rows/s median (min–max) | vs psql \\copy | client CPU µs/row | PostgreSQL CPU µs/row |')
        say('|---|---:|---:|---:|---:|')
        for (const [name, samples] of s) {
          const rates = samples.map((x) => x.rate)
          const cpu = (which: 'client' | 'postgres'): string => (perUnit(samples, which) || NaN).toFixed(2).replace('NaN', 'n/a')
          say(`| ${name} | ${f0(median(rates))} (${range(rates, 0)}) | ${psql ? (name === 'copyFrom' ? ratio(s, 'psql \\copy', 'copyFrom') : '1') : 'n/a'} | ${cpu('client')} | ${cpu('postgres')} |`)
        }
      } finally {
        await copyDb.close()
      }
      say()
      lap('bulk')
    }

    if (ONLY.has('store')) {
      const stores = await openBenchStores(db)
      const rows = storeRows(STORE_ROWS)
      // Warm-up: plans, the catalog read, the JIT.
      await viaAddMany(stores.chosen, storeRows(2000))
      await viaCopyRows(db, storeRows(2000))
      await settle(pool)
      const s = await interleave(
        [
          { name: 'copyFrom (rows as arrays)', run: () => viaCopyRows(db, rows) },
          { name: 'store addMany, { returning: false }', run: () => viaAddManyCount(stores.chosen, rows) },
          { name: 'store addMany', run: () => viaAddMany(stores.chosen, rows) },
          { name: 'store addMany, INSERTs only', run: () => viaAddMany(stores.inserts, rows) },
        ],
        postmaster,
      )
      say(`## Record store: addMany of ${STORE_ROWS.toLocaleString('en-US')} rows (name, value; id and a default filled in by the server)`)
      say()
      say('| side | rows/s median (min–max) | vs copyFrom | client CPU µs/row | PostgreSQL CPU µs/row | returns the stored rows |')
      say('|---|---:|---:|---:|---:|---|')
      for (const [name, samples] of s) {
        const rates = samples.map((x) => x.rate)
        const cpu = (which: 'client' | 'postgres'): string => (perUnit(samples, which) || NaN).toFixed(2).replace('NaN', 'n/a')
        say(
          `| ${name} | ${f0(median(rates))} (${range(rates, 0)}) | ${name.startsWith('copyFrom') ? '1' : ratio(s, 'copyFrom (rows as arrays)', name)} | ${cpu('client')} | ${cpu('postgres')} | ${name.startsWith('copyFrom') || name.includes('returning') ? 'no (a count)' : 'yes, in input order'} |`,
        )
      }
      say()
      lap('record store')
    }

    if (ONLY.has('memory')) {
      const r: MemoryResult = await measureMemory(db, url.href, `memory-${MEMORY_TASKS}`, MEMORY_TASKS, MEMORY_FRESH, import.meta.url)
      targets.push({
        target: `memory, main process peak RSS of a ${r.tasks.toLocaleString('en-US')}-task pipeline`,
        value: r.peakRssMb,
        detail: `${r.peakRssMb.toFixed(0)} MB`,
        goal: 300,
        kind: 'max',
        unit: ' MB',
      })
      say(`## Memory`)
      say()
      say(
        `A ${r.tasks.toLocaleString('en-US')}-task pipeline fed from an async generator (${(r.tasks - MEMORY_FRESH).toLocaleString('en-US')} keys already done in the ledger, ${MEMORY_FRESH.toLocaleString('en-US')} run by 2 threads × 2 connections): ` +
          `main process peak RSS ${r.peakRssMb.toFixed(0)} MB (VmHWM; target < 300 MB); ${r.done.toLocaleString('en-US')} done, ${r.skipped.toLocaleString('en-US')} skipped in ${r.seconds.toFixed(1)} s.`,
      )
      say()
      lap('memory')
    }

    if (targets.length) {
      say(`## Targets (issue #11)`)
      say()
      say('| target | measured median (min–max of the repetitions) | goal | met |')
      say('|---|---:|---:|:---:|')
      for (const t of targets) {
        const met = Number.isFinite(t.value) ? ((t.kind === 'min' ? t.value >= t.goal : t.value <= t.goal) ? 'yes' : 'no') : 'n/a'
        say(`| ${t.target} | ${t.detail} | ${t.kind === 'min' ? '≥' : '≤'} ${t.goal}${t.unit} | ${met} |`)
      }
      say()
    }

    const loadAfter = loadavg()[0]!
    say(`## How this was made`)
    say()
    say(
      `\`npm run bench\` (bench/run.ts, compiled by \`tsc -p bench\`). Hand loop: one process of its own (a child: in the bench's process pgcrew's AsyncLocalStorage is in use, which on Node 20 slows every promise there), one pg.Pool of 4, 4 async loops, warmed on 200 tasks before the clock and its CPU its own over the timed window; each task BEGIN, the ledger claim (pgcrew's own INSERT … ON CONFLICT), read, compute, insert, update, COMMIT. pgcrew: runPipeline with a worker doing the same three statements in the task's transaction (the claim is pgcrew's). pgbench: \`-M prepared -c 4\` with the same statements as a custom script and no JavaScript compute (the server's own limit here). Hand loop, 2 processes × 2: the same loop in two child processes, a pg.Pool of 2 and 2 loops each, half the tasks each; warmed (200 tasks each) and then started together, its CPU the children's own over the timed window; or (CPU-heavy only) cold, timed from the fork, its CPU the children's whole.`,
    )
    say(
      `1-min load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after${Math.max(loadBefore, loadAfter) > CORES ? ` — the machine was busy with other work (more than ${CORES} runnable): absolute numbers are noisy, the per-repetition ratios less so` : ''}. Total bench time ${((performance.now() - t0) / 1000).toFixed(0)} s${took.length ? `: ${took.join(', ')}, the rest starting the throwaway server and setting up` : ''}.`,
    )
    if (process.env.BENCH_WRITE !== '0')
      writeFileSync(new URL(import.meta.url.includes('/.tmp/bench-build/') ? '../../../BENCHMARKS.md' : '../BENCHMARKS.md', import.meta.url), lines.join('\n') + '\n')
  } finally {
    await db.close().catch(() => {})
    await pool.end().catch(() => {})
    await admin.query(`DROP DATABASE IF EXISTS ${dbname} WITH (FORCE)`).catch(() => {})
    await admin.end().catch(() => {})
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === '--memory-child') await memoryChild()
else await main()
