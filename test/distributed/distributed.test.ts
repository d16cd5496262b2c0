// Several machines on one box: separate `pgcrew work` processes, each with its own PGCREW_HOSTNAME
// (the hostname picks the profile, as on a cluster), on one pipeline through graphile-worker.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import pg from 'pg'
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

/** A profile that only hosts under .test.local get, as a cluster's login and compute nodes would. */
async function setup(n: number): Promise<{ env: NodeJS.ProcessEnv; client: pg.Client }> {
  const { dbname, url } = await freshDatabase('distributed')
  const s = server()
  const file = join(scratchDir(), 'profiles.ini')
  writeFileSync(file, `[cluster]\nhost = ${s.host}\nport = ${s.port}\ndbname = ${dbname}\nuser = ${s.user}\nreadonly = false\ndomain = .*\\.test\\.local\n`)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  after(() => client.end())
  return { env: cleanEnv({ PGCREW_PROFILES: file, PGPASSWORD: s.password, PGCREW_FIXTURE_N: String(n), PGCREW_FIXTURE_SLEEP_MS: '5' }), client }
}

const poolIdOf = (m: Machine): string | undefined => /joined as engine pool (\S+)/.exec(m.stderr)?.[1]

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

    const [ea, eb, ec, ed] = await Promise.all([a, b, c, d].map((m) => m.exited))
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

  test('a task that JSON would change is refused at enqueue time with TASK_NOT_JSON, naming the key and the field', async () => {
    const { env } = await setup(3)
    const m = machine('a.test.local', ['run', pipeline, '--distributed', '--threads', '1'], { ...env, PGCREW_FIXTURE_BAD_TASK: '1' })
    const { code } = await m.exited
    assert.equal(code, 1)
    assert.match(m.stderr, /pgcrew: pipeline distributed-counter: task "1" does not survive a JSON round trip, .*task\.at is a Date/)
    assert.doesNotMatch(m.stderr, /\n\s+at /)
  })
})
