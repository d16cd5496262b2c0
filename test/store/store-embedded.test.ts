import assert from 'node:assert/strict'
import { chmodSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pg from 'pg'
import { openStore } from '../../src/store/store.ts'
import { cleanEnv, freshDatabase, scratchDir, server } from '../helpers.ts'

async function refused(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  try {
    await client.connect()
    await client.end()
    return false
  } catch {
    return true
  }
}

describe("openStore() without a Database: pgcrew's own PostgreSQL when nothing is configured", () => {
  test('nothing configured: a real, throwaway PostgreSQL, stopped and removed when the store closes', async () => {
    const store = await openStore({ env: cleanEnv() })
    const cluster = store.server
    assert.ok(cluster, 'the store started a server of its own')
    assert.equal(cluster.persistent, false)
    const dataDir = cluster.dataDir
    const url = cluster.url
    try {
      assert.ok(existsSync(join(dataDir, 'PG_VERSION')), 'a real data directory')
      assert.match((await store.db.query('SELECT version() AS v')).rows[0].v, /^PostgreSQL/)
      await store.setConfig('mode', 'memory')
      assert.equal(await store.getConfig('mode'), 'memory')
    } finally {
      await store.close()
    }
    assert.equal(existsSync(dataDir), false, 'the data directory is gone')
    assert.equal(await refused(url), true, 'the server is stopped')
  })

  test('persist: dir keeps the data between runs, with durable settings, on the same data directory', async () => {
    // A scratch directory the server's unprivileged user can reach (the tests run as root).
    const scratch = scratchDir()
    chmodSync(scratch, 0o755)
    const dir = join(scratch, 'store-data')
    {
      await using store = await openStore({ persist: dir, env: cleanEnv() })
      assert.equal(store.server?.persistent, true)
      assert.equal((await store.db.query('SHOW fsync')).rows[0].fsync, 'on', 'durable settings')
      await store.setConfig('runs', 1)
      const session = await store.startSession()
      await store.queue('first run')
      assert.equal(session, 1)
    }
    assert.ok(existsSync(join(dir, 'PG_VERSION')), 'the data stays after close')
    {
      await using store = await openStore({ persist: dir, env: cleanEnv() })
      assert.equal(await store.getConfig('runs'), 1, 'the first run’s config is there')
      assert.deepEqual(
        (await store.messages(1)).map((m) => m.message),
        ['first run'],
      )
      assert.equal(await store.startSession(), 2)
    }
  })

  test('a URL, or PG* settings in the environment, choose that server instead', async () => {
    const { url, dbname } = await freshDatabase('storeenv')
    {
      await using store = await openStore({ url, env: cleanEnv() })
      assert.equal(store.server, undefined)
      assert.equal((await store.db.query('SELECT current_database() AS d')).rows[0].d, dbname)
    }
    const { host, port, user, password } = server()
    {
      await using store = await openStore({ env: cleanEnv({ PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname }) })
      assert.equal(store.server, undefined, 'PG* settings count as configured')
      assert.equal((await store.db.query('SELECT current_database() AS d')).rows[0].d, dbname)
      assert.equal((await store.sessions()).length, 0)
    }
    await assert.rejects(openStore({ url, persist: '/tmp/x' }), { code: 'INVALID_OPTION', message: /persist .* cannot go with url/ })
  })
})
