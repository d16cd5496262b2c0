// Several machines on one box: separate `pgcrew work` processes, each with its own PGCREW_HOSTNAME
// (the hostname picks the profile, as on a cluster), on one pipeline through graphile-worker.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { startTempCluster, type TempCluster } from '../../src/cluster/temp-cluster.ts'
import { livenessKey } from '../../src/distributed/distributed-liveness.ts'
import { cleanEnv, freshDatabase, scratchDir, server } from '../helpers.ts'

const pipeline = new URL('../fixtures/pipelines/distributed-counter.ts', import.meta.url).pathname
const cli = new URL('../../src/cli.ts', import.meta.url).pathname
const children = new Set<ChildProcess>()
after(() => {
  for (const child of children) child.kill('SIGKILL')
})

interface Machine {
  child: ChildProcess
  stdout: string
  stderr: string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function machine(host: string, argv: string[], env: NodeJS.ProcessEnv): Machine {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...argv], { env: { ...env, PGCREW_HOSTNAME: host }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const m: Machine = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        children.delete(child)
        resolve({ code, signal })
      }),
    ),
  }
  child.stdout!.on('data', (d: Buffer) => (m.stdout += String(d)))
  child.stderr!.on('data', (d: Buffer) => (m.stderr += String(d)))
  return m
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMillis = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMillis
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Where the machines connect: the suite's server (a fresh database on it), or a cluster of the test's own. */
interface Target {
  host: string
  port: number
  user: string
  password: string
  dbname: string
  url: string
}

async function suiteTarget(): Promise<Target> {
  const { dbname, url } = await freshDatabase('distributed')
  return { ...server(), dbname, url }
}

function clusterTarget(cluster: TempCluster): Target {
  return { host: cluster.host, port: cluster.port, user: cluster.superuser, password: cluster.password, dbname: 'postgres', url: cluster.url }
}

/** A profile that only hosts under .test.local get, as a cluster's login and compute nodes would. */
async function setup(n: number, target?: Target, extra: Record<string, string> = {}): Promise<{ env: NodeJS.ProcessEnv; client: pg.Client; target: Target }> {
  const t = target ?? (await suiteTarget())
  const file = join(scratchDir(), 'profiles.ini')
  writeFileSync(file, `[cluster]\nhost = ${t.host}\nport = ${t.port}\ndbname = ${t.dbname}\nuser = ${t.user}\nreadonly = false\ndomain = .*\\.test\\.local\n`)
  const client = new pg.Client({ connectionString: t.url })
  await client.connect()
  // A restart of the test's server ends this session too: the test opens another then.
  client.on('error', () => {})
  after(() => client.end().catch(() => {}))
  return { env: cleanEnv({ PGCREW_PROFILES: file, PGPASSWORD: t.password, PGCREW_FIXTURE_N: String(n), PGCREW_FIXTURE_SLEEP_MS: '5', ...extra }), client, target: t }
}

/** One query on a connection of its own (the server may have restarted since the last). */
async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text, params)).rows as T[]
  } finally {
    await client.end()
  }
}

/** Every machine's exit, or a failure naming the machines still running (with what they printed) after `timeoutMillis`. */
async function exits(machines: Machine[], timeoutMillis = 180_000): Promise<Array<{ code: number | null; signal: NodeJS.Signals | null }>> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const running = machines.filter((m) => m.child.exitCode === null && m.child.signalCode === null)
      reject(new Error(`machine(s) still running after ${timeoutMillis / 1000} s:\n${running.map((m) => m.stderr + m.stdout).join('\n---\n')}`))
    }, timeoutMillis)
  })
  try {
    return await Promise.race([Promise.all(machines.map((m) => m.exited)), late])
  } finally {
    clearTimeout(timer)
  }
}

const poolIdOf = (m: Machine): string | undefined => /joined as engine pool (\S+)/.exec(m.stderr)?.[1]
/** The machine's engine pool now: the one it joined as, or the last that took the place of a pool the engine gave up. */
const currentPoolOf = (m: Machine): string | undefined => [...m.stderr.matchAll(/pool (\S+) took its place/g)].at(-1)?.[1] ?? poolIdOf(m)

describe('pgcrew work: several machines', () => {
  test('5,000 counters on four machines, one killed with SIGKILL and one stopped with Ctrl-C: every counter is 1, every machine worked, the dead one’s jobs are retaken in seconds', async () => {
    const n = 5000
    const { env, client } = await setup(n)
    const flags = ['--threads', '1', '--per-worker', '2']
    const a = machine('a.test.local', ['run', pipeline, '--distributed', '--tasks-per-job', '10', ...flags], env)
    await until('machine a to enqueue', async () => (await client.query("SELECT to_regclass('graphile_worker.jobs') IS NOT NULL AS ok")).rows[0].ok && poolIdOf(a) !== undefined)
    const [b, c, d] = ['b', 'c', 'd'].map((h) => machine(`${h}.test.local`, ['work', pipeline, ...flags], env)) as [Machine, Machine, Machine]
    const perHost = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await client.query("SELECT host, count(*)::int AS n FROM pgcrew_ledger WHERE status = 'done' GROUP BY host")).rows.map((r) => [r.host, r.n]))
    await until('machines b, c and d to do some work', async () => {
      const h = await perHost()
      return (h['b.test.local'] ?? 0) >= 30 && (h['c.test.local'] ?? 0) >= 30 && (h['d.test.local'] ?? 0) >= 1
    })
    const deadPool = poolIdOf(b)!
    assert.match(deadPool, /^pool-[0-9a-f]+$/)
    const locked = async (): Promise<number> => (await client.query('SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE locked_by = $1', [deadPool])).rows[0].n
    await until('machine b to hold jobs', async () => (await locked()) > 0)
    const killedAt = Date.now()
    b.child.kill('SIGKILL')
    c.child.kill('SIGINT')
    await until('the jobs of the killed machine to be freed', async () => (await locked()) === 0, 60_000)
    const retakeSeconds = (Date.now() - killedAt) / 1000
    console.log(`# retake after SIGKILL: ${retakeSeconds.toFixed(1)} s`)
    assert.ok(retakeSeconds < 30, `the killed machine's jobs took ${retakeSeconds} s to be freed`)

    const [ea, eb, ec, ed] = await exits([a, b, c, d])
    assert.equal(eb!.signal, 'SIGKILL')
    assert.equal(ec!.code, 1, c.stderr)
    assert.match(c.stdout, /cancelled: this machine stopped/)
    assert.match(c.stderr, /interrupted: returning fetched jobs/)
    assert.equal(ea!.code, 0, a.stderr)
    assert.equal(ed!.code, 0, d.stderr)
    // Whichever live machine's sweeper got there first freed them: c too, while it was stopping.
    assert.match([a, c, d].map((m) => m.stderr + m.stdout).join(''), new RegExp(`freed \\d+ job\\(s\\) of ${deadPool}`))
    assert.match(a.stdout, /enqueued +5000 tasks in 500 jobs/)

    const counters = (await client.query('SELECT count(*)::int AS all, count(*) FILTER (WHERE n = 1)::int AS once FROM counters')).rows[0]
    assert.deepEqual(counters, { all: n, once: n })
    const hosts = await perHost()
    assert.equal(
      Object.values(hosts).reduce((x, y) => x + y, 0),
      n,
    )
    for (const h of ['a', 'b', 'c', 'd']) assert.ok((hosts[`${h}.test.local`] ?? 0) > 0, `machine ${h} did no work: ${JSON.stringify(hosts)}`)
    assert.equal((await client.query('SELECT count(*)::int AS n FROM graphile_worker.jobs')).rows[0].n, 0)
  })

  test('a server restart mid-run on three machines: every machine goes on and exits 0, its liveness lock comes back, every counter is 1', async () => {
    const cluster = await startTempCluster()
    try {
      const n = 3000
      // 20 ms per task: the run outlasts the restart and the time the machines take to come back.
      const { env, client, target } = await setup(n, clusterTarget(cluster), { PGCREW_FIXTURE_SLEEP_MS: '20' })
      await client.end()
      const flags = ['--threads', '1', '--per-worker', '2']
      const a = machine('a.test.local', ['run', pipeline, '--distributed', '--tasks-per-job', '10', ...flags], env)
      await until('machine a to enqueue', async () => poolIdOf(a) !== undefined && (await sql<{ n: number }>(target.url, 'SELECT count(*)::int AS n FROM graphile_worker.jobs'))[0]!.n > 0)
      const machines = [a, ...['b', 'c'].map((h) => machine(`${h}.test.local`, ['work', pipeline, ...flags], env))]
      const doneBy = async (): Promise<Record<string, number>> =>
        Object.fromEntries((await sql<{ host: string; n: number }>(target.url, "SELECT host, count(*)::int AS n FROM pgcrew_ledger WHERE status = 'done' GROUP BY host")).map((r) => [r.host, r.n]))
      await until('every machine to do some work', async () => {
        const h = await doneBy()
        return ['a', 'b', 'c'].every((m) => (h[`${m}.test.local`] ?? 0) >= 20)
      })
      // Which of the machines' liveness locks are held now (a single-bigint advisory key: classid, objid, objsubid 1).
      const heldLocks = async (pools: string[]): Promise<string[]> =>
        (
          await sql<{ k: string }>(
            target.url,
            `SELECT k::text FROM unnest($1::bigint[]) k WHERE EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::bigint = (k >> 32) & 4294967295 AND l.objid::bigint = k & 4294967295)`,
            [pools.map((p) => String(livenessKey(p)))],
          )
        ).map((r) => pools.find((p) => String(livenessKey(p)) === r.k)!)
      const pools = machines.map((m) => currentPoolOf(m)!)
      assert.deepEqual((await heldLocks(pools)).sort(), [...pools].sort(), 'a machine did not hold its liveness lock before the restart')
      const before = Object.values(await doneBy()).reduce((x, y) => x + y, 0)
      await cluster.stopServer()
      await new Promise((r) => setTimeout(r, 1000))
      await cluster.startServer()
      const upAt = Date.now()
      // Each machine's current pool (the engine may have given one up at the restart) holds its lock
      // again, or the machine has said so and already finished.
      const back = (m: Machine): boolean => /the liveness lock is back after [\d.]+ s; fetching again/.test(m.stderr)
      await until('every machine to take its liveness lock again', async () => {
        const now = machines.map((m) => currentPoolOf(m)!)
        const held = new Set(await heldLocks(now))
        return machines.every((m, i) => {
          if (held.has(now[i]!) || back(m)) return true
          if (m.child.exitCode !== null) throw new Error(`a machine exited before its lock came back: ${m.stderr}`)
          return false
        })
      })
      console.log(`# liveness locks back ${((Date.now() - upAt) / 1000).toFixed(1)} s after the server came back; ${before} of ${n} tasks were done at the restart`)
      assert.ok(before < n, 'the run ended before the restart')

      for (const [i, e] of (await exits(machines, 100_000)).entries()) assert.equal(e.code, 0, machines[i]!.stderr + machines[i]!.stdout)
      // Each machine lost its lock with the server and said when it was back.
      for (const m of machines) assert.ok(back(m), `a machine did not say its liveness lock was back:\n${m.stderr}`)
      const counters = (await sql(target.url, 'SELECT count(*)::int AS all, count(*) FILTER (WHERE n = 1)::int AS once FROM counters'))[0]
      assert.deepEqual(counters, { all: n, once: n })
      const hosts = await doneBy()
      assert.equal(
        Object.values(hosts).reduce((x, y) => x + y, 0),
        n,
      )
      // Each task counted as done on exactly one machine: a duplicate delivery was a skip where it ran.
      const doneHere = machines.map((m) => Number(/tasks +(\d+) done here/.exec(m.stdout)?.[1]))
      assert.equal(
        doneHere.reduce((x, y) => x + y, 0),
        n,
        machines.map((m) => m.stdout).join('\n'),
      )
      assert.equal((await sql<{ n: number }>(target.url, 'SELECT count(*)::int AS n FROM graphile_worker.jobs'))[0]!.n, 0)
      for (const m of machines) console.log(`# ${/^machine +(.*)/m.exec(m.stdout)?.[1]}: ${/^tasks +(.*)/m.exec(m.stdout)?.[1]}; ${/^time +(.*)/m.exec(m.stdout)?.[1]}\n${m.stderr}`)
    } finally {
      for (const child of children) child.kill('SIGKILL')
      await cluster.stop()
    }
  })

  test('machines that start together on a server of 20 connections do not over-subscribe it: each fits (clamped) or is refused with advice, and every counter is 1', async () => {
    const cluster = await startTempCluster({ settings: { max_connections: 20 } })
    try {
      const n = 600
      const { env, client, target } = await setup(n, clusterTarget(cluster), { PGCREW_FIXTURE_SLEEP_MS: '20' })
      const limit = (await client.query<{ n: number }>("SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS n")).rows[0]!.n
      // The most sessions the server had at once while the machines ran (this client's own included).
      let peak = 0
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          const r = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'").catch(() => undefined)
          if (r) peak = Math.max(peak, r.rows[0]!.n)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })()
      const a = machine('a.test.local', ['run', pipeline, '--distributed', '--tasks-per-job', '5', '--threads', '1', '--per-worker', '1'], env)
      await until('machine a to enqueue', async () => poolIdOf(a) !== undefined && (await sql<{ n: number }>(target.url, 'SELECT count(*)::int AS n FROM graphile_worker.jobs'))[0]!.n > 0)
      // Three more at the same instant, each asking for far more than is left: 2 (main) + 4 (engine) + 4 threads × 2.
      const late = ['b', 'c', 'd'].map((h) => machine(`${h}.test.local`, ['work', pipeline, '--threads', '4', '--per-worker', '2'], env))
      const machines = [a, ...late]
      const ends = await exits(machines, 150_000)
      sampling = false
      await sampler
      assert.ok(peak <= limit, `${peak} sessions at once on a server that takes ${limit}`)
      for (const [i, m] of machines.entries()) {
        const out = m.stderr + m.stdout
        assert.doesNotMatch(out, /too many clients|53300/, out)
        if (ends[i]!.code === 0) assert.match(out, /fits|clamped to/, out)
        else {
          assert.equal(ends[i]!.code, 1, out)
          assert.match(m.stderr, /BUDGET_EXCEEDED|over budget/, out)
          assert.match(m.stderr, /lower --threads|raise --budget|close other sessions/, out)
        }
      }
      assert.equal(ends[0]!.code, 0, a.stderr + a.stdout)
      // The late machines asked for more than was left: the budget must have clamped or refused at least one of them.
      assert.ok(
        late.some((m, i) => ends[i + 1]!.code === 1 || /clamped to/.test(m.stderr + m.stdout)),
        late.map((m) => m.stderr).join('\n'),
      )
      const counters = (await sql(target.url, 'SELECT count(*)::int AS all, count(*) FILTER (WHERE n = 1)::int AS once FROM counters'))[0]
      assert.deepEqual(counters, { all: n, once: n })
      console.log(
        `# peak ${peak} of ${limit} sessions; ${machines.map((m, i) => `${'abcd'[i]}: exit ${ends[i]!.code} ${/(clamped to [^\n(]*|fits|over budget[^\n]*)/.exec(m.stderr + m.stdout)?.[1] ?? ''}`).join('; ')}`,
      )
    } finally {
      for (const child of children) child.kill('SIGKILL')
      await cluster.stop()
    }
  })

  test('a task that JSON would change is refused at enqueue time with TASK_NOT_JSON, naming the key and the field', async () => {
    const { env } = await setup(3)
    const m = machine('a.test.local', ['run', pipeline, '--distributed', '--threads', '1'], { ...env, PGCREW_FIXTURE_BAD_TASK: '1' })
    const { code } = await m.exited
    assert.equal(code, 1)
    assert.match(m.stderr, /pgcrew: pipeline distributed-counter: task "1" does not survive a JSON round trip, .*task\.at is a Date/)
    assert.doesNotMatch(m.stderr, /\n\s+at /)
  })
})
