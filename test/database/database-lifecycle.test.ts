import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../../src/database/database.ts'
import type { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { realmSize, trackPgPools } from '../../src/database/database-realm.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, scratchDir, server, urlFor } from '../helpers.ts'

/** Wait until a session of this application is inside pg_sleep (the work really is in flight). */
const sleeping = (app: string) =>
  eventually(async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'", [app]))[0]!.n > 0)

describe('crews', () => {
  test('the realm registry does not grow with every query on a tracked pool', async () => {
    trackPgPools()
    const pool = new pg.Pool({ connectionString: (await freshDatabase('realm')).url, max: 1 })
    const before = realmSize()
    for (let i = 0; i < 50; i++) await pool.query('SELECT 1')
    assert.ok(realmSize() - before <= 1, `registry grew by ${realmSize() - before}`)
    await pool.end()
    assert.equal(realmSize(), before, 'an ended pool is forgotten')
  })

  test('the realm registry forgets a closed Database (regression: one entry per Database ever made)', async () => {
    const { url } = await freshDatabase('realmdb')
    const before = realmSize()
    for (let i = 0; i < 200; i++) {
      const db = new Database({ connectionString: url, env: cleanEnv() })
      if (i % 50 === 0) await db.query('SELECT 1')
      await db.close()
    }
    assert.equal(realmSize(), before)
  })
})

describe('closing and switching', () => {
  test('close() does not hang on a cursor abandoned mid-iteration or a lock never released; it warns and destroys them', async () => {
    const { url } = await freshDatabase('forgotten')
    const warnings: string[] = []
    const db = new Database({ connectionString: url, env: cleanEnv(), closeTimeoutMillis: 200, onWarning: (m) => warnings.push(m) })
    const cursor = db.cursor('SELECT g FROM generate_series(1, 100000) g', [], { batchSize: 10 })
    await cursor.read(5)
    await db.advisoryLock('never-released')
    await db.close()
    assert.equal(db.connected, false)
    assert.match(warnings.join('\n'), /destroyed 2 connection\(s\) still in use/)
  })

  test('per-transaction mode: close() lets a transaction in flight finish instead of cutting its connection', async () => {
    const { url } = await freshDatabase('inflight')
    const db = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction', applicationName: 'inflight-test' })
    await db.connect()
    const work = db.transaction(async (tx) => (await tx.query('SELECT pg_sleep(0.3), 42 AS answer')).rows[0].answer)
    assert.ok(await sleeping('inflight-test'))
    await db.close()
    assert.equal(await work, 42)
  })

  for (const pooling of ['pooled', 'per-transaction'] as const) {
    test(`work waiting for a connection when a switch retires the pool runs on the new one instead of failing with CLOSED (${pooling})`, async () => {
      const { url, dbname } = await freshDatabase('switchqueued')
      await admin(`CREATE DATABASE "${dbname}_2"`)
      try {
        await using db = new Database({ connectionString: url, env: cleanEnv(), pooling, max: 1, applicationName: `switch-queued-${pooling}` })
        await db.connect()
        // The only connection stays busy until the switch is done, however long the switch takes.
        let holding!: () => void
        let release!: () => void
        const held = new Promise<void>((resolve) => (holding = resolve))
        const busy = db.transaction(async (tx) => {
          await tx.query('SELECT 1')
          holding()
          await new Promise<void>((resolve) => (release = resolve))
        })
        await held
        const queued = db.query('SELECT current_database() AS d') // waits: max is 1
        await db.changeVersion('2')
        release()
        await busy
        assert.equal((await queued).rows[0].d, `${dbname}_2`)
        // A steady stream of transactions across switches back and forth: none fails.
        let stop = false
        let done = 0
        const loops = Array.from({ length: 4 }, async () => {
          while (!stop) {
            await db.transaction((tx) => tx.query('SELECT 1'))
            done++
          }
        })
        for (let i = 0; i < 6; i++) await db.changeVersion(i % 2 ? '2' : undefined)
        stop = true
        await Promise.all(loops)
        assert.ok(done > 0)
      } finally {
        await admin(`DROP DATABASE IF EXISTS "${dbname}_2" WITH (FORCE)`)
      }
    })
  }

  test('a switch lets work in flight on the old connection finish', async () => {
    const { url, dbname } = await freshDatabase('switchinflight')
    await admin(`CREATE DATABASE "${dbname}_2"`)
    try {
      await using db = new Database({ connectionString: url, env: cleanEnv(), applicationName: 'switch-inflight-test' })
      await db.connect()
      const work = db.transaction(async (tx) => (await tx.query('SELECT pg_sleep(0.3), current_database() AS d')).rows[0].d)
      assert.ok(await sleeping('switch-inflight-test'))
      await db.changeVersion('2')
      assert.equal(await work, dbname)
      assert.equal((await db.query('SELECT current_database() AS d')).rows[0].d, `${dbname}_2`)
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${dbname}_2" WITH (FORCE)`)
    }
  })

  test('close() racing connect() leaves no live pool behind', async () => {
    const { url, dbname } = await freshDatabase('race')
    const db = new Database({ connectionString: url, env: cleanEnv(), applicationName: 'race-test' })
    const connecting = db.connect()
    await db.close()
    await assert.rejects(connecting, { code: 'CLOSED' })
    assert.equal(db.connected, false)
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'race-test'", [dbname])
    assert.equal(left[0]!.n, 0)
  })

  test('a failed connectFromParameters keeps the old password as well as the old connection', async () => {
    const { dbname } = await freshDatabase('keeppw')
    const role = await freshRole('keeppw')
    const { host, port } = server()
    await using db = new Database({ host, port, dbname, user: role.name, password: role.password, env: cleanEnv() })
    await db.connect()
    await assert.rejects(db.connectFromParameters(urlFor(dbname, { name: role.name, password: 'WRONG-password' })), { code: 'AUTHENTICATION_FAILED' })
    await db.changeVersion(undefined) // reconnects with the password in force
    assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, role.name)
  })

  test('an onConnect hook that runs SET ROLE does not stop the pool from reusing connections', async () => {
    const { url } = await freshDatabase('hookrole')
    const role = await freshRole('hookrole')
    await admin(`GRANT "${role.name}" TO CURRENT_USER`)
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    db.onConnect(async (client) => {
      await client.query(`SET ROLE "${role.name}"`)
    })
    const pids = new Set<number>()
    for (let i = 0; i < 10; i++) pids.add((await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid)
    assert.equal(pids.size, 1)
  })
})

describe('snapshots', () => {
  test('a printed or JSON-encoded snapshot shows *** instead of the password bytes', async () => {
    const { url } = await freshDatabase('snapmask')
    const db = new Database({ connectionString: url, env: cleanEnv({ PGPASSWORD: 'env-secret-value', PGCREW_MY_URL: 'postgres://u:url-secret-value@h/db' }) })
    const snap = db.snapshot()
    for (const text of [JSON.stringify(snap), inspect(snap)]) {
      assert.match(text, /\*\*\*/)
      assert.doesNotMatch(text, /"0":|Uint8Array|env-secret-value|url-secret-value/)
    }
    const copy = Database.fromSnapshot(structuredClone(snap))
    await copy.connect()
    await copy.close()
  })

  test('after connectFromParameters the snapshot no longer names the profile the master dropped', async () => {
    const { url, dbname } = await freshDatabase('dropprofile')
    const dir = scratchDir()
    const profilesFile = join(dir, 'profiles.ini')
    writeFileSync(profilesFile, `[ro]\nhost = 127.0.0.1\ndbname = ${dbname}\nuser = nobody_here\n`)
    await using db = new Database({ profile: 'ro', profilesFile, env: cleanEnv() })
    await db.connectFromParameters(url)
    assert.equal(db.snapshot().options.profile, undefined)
  })
})

describe('stuck servers, queued work and concurrent switches', () => {
  test('with prePing on, a connection reset during the ping costs a reconnect, not a crashed process', async () => {
    const { createServer, connect } = await import('node:net')
    const { url } = await freshDatabase('preping')
    const { host, port } = server()
    let resetNext = false
    const proxy = createServer((downstream) => {
      const upstream = connect(port, host)
      downstream.on('data', (chunk) => {
        if (resetNext) {
          resetNext = false
          downstream.resetAndDestroy()
          upstream.destroy()
          return
        }
        upstream.write(chunk)
      })
      upstream.pipe(downstream)
      downstream.on('error', () => upstream.destroy())
      upstream.on('error', () => downstream.destroy())
    })
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
    const proxyPort = (proxy.address() as { port: number }).port
    const via = new URL(url)
    via.port = String(proxyPort)
    try {
      await using db = new Database({ connectionString: via.toString(), env: cleanEnv(), prePing: true, max: 2 })
      assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1)
      resetNext = true // the idle connection's next packet (the ping) is answered with a TCP reset
      assert.equal((await db.query('SELECT 2 AS two')).rows[0].two, 2)
    } finally {
      proxy.close()
    }
  })

  test('with prePing on, a stopped backend fails the ping in time: the query gets a new connection, and close() does not wait for the ping', { timeout: 20_000 }, async () => {
    const { url } = await freshDatabase('stuckping')
    const app = `stuckping-${process.pid}`
    const db = new Database({ connectionString: url, env: cleanEnv(), prePing: true, max: 2, connectionTimeoutMillis: 500, closeTimeoutMillis: 300, applicationName: app })
    const idleBackend = async () => (await admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [app]))[0]!.pid
    await db.query('SELECT 1')
    let stopped = await idleBackend()
    process.kill(stopped, 'SIGSTOP')
    try {
      // The ping of the stopped connection times out after 500 ms; the query runs on a fresh one.
      assert.equal((await db.query('SELECT 2 AS two')).rows[0].two, 2)
    } finally {
      process.kill(stopped, 'SIGCONT')
    }
    // Now a ping that is still waiting when close() starts (no timeout this time: it would wait forever).
    await db.close()
    const db2 = new Database({ connectionString: url, env: cleanEnv(), prePing: true, max: 1, connectionTimeoutMillis: 0, closeTimeoutMillis: 300, applicationName: app })
    await db2.query('SELECT 1')
    stopped = await idleBackend()
    process.kill(stopped, 'SIGSTOP')
    try {
      const pinging = db2.query('SELECT 3').catch((e: { code?: string }) => e.code)
      await new Promise((r) => setTimeout(r, 100))
      await db2.close() // hung until SIGCONT before the fix
      assert.equal(await pinging, 'CLOSED')
    } finally {
      process.kill(stopped, 'SIGCONT')
    }
  })

  for (const pooling of ['pooled', 'per-transaction'] as const) {
    test(`close() finishes within closeTimeoutMillis even when a backend is stopped (${pooling}, with a listener)`, { timeout: 15_000 }, async () => {
      const { url } = await freshDatabase('stuck')
      const db = new Database({ connectionString: url, env: cleanEnv(), pooling, closeTimeoutMillis: 300, onWarning: () => {} })
      const listener = await db.listen('stuck')
      const busy = db.transaction(async (tx) => tx.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.2)')).catch((e: Error) => e)
      let backends: number[] = []
      const both = await eventually(async () => {
        backends = (
          await admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND (query LIKE 'LISTEN%' OR query LIKE '%pg_sleep%' OR query LIKE 'SELECT pg_backend_pid() AS pid')", [
            new URL(url).pathname.slice(1),
          ])
        ).map((r) => r.pid)
        return backends.length >= 2
      })
      assert.ok(both, `expected the listener's and the transaction's backends, saw ${backends.length}`)
      for (const pid of backends) process.kill(pid, 'SIGSTOP')
      try {
        await db.close() // hung until SIGCONT before the fix
        assert.equal(db.connected, false)
      } finally {
        for (const pid of backends) process.kill(pid, 'SIGCONT')
      }
      await busy
      assert.equal(await listener.next(), undefined)
    })
  }

  test('work still waiting for a connection when close() starts fails with CLOSED and opens nothing afterwards', async () => {
    const { url, dbname } = await freshDatabase('queued')
    const db = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction', max: 1, applicationName: 'queued-test' })
    await db.connect()
    const first = db.transaction(async (tx) => tx.query('SELECT pg_sleep(0.3)'))
    assert.ok(
      await eventually(
        async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'queued-test' AND query LIKE 'SELECT pg_sleep%'"))[0]!.n === 1,
      ),
    )
    const queued = assert.rejects(db.query('SELECT 1'), { code: 'CLOSED' })
    await db.close()
    await first
    await queued
    await new Promise((r) => setTimeout(r, 300))
    const left = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'queued-test' AND state <> 'idle'", [dbname])
    assert.equal(left[0]!.n, 0)
  })

  test('per-transaction mode: waiting for a free connection times out like the pool does, instead of deadlocking', async () => {
    const { url } = await freshDatabase('slotwait')
    await using db = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction', max: 1, connectionTimeoutMillis: 300 })
    await assert.rejects(
      db.withAdvisoryLock('slot', () => db.query('SELECT 1')),
      { code: 'CONNECTION_FAILED', message: /no connection free within 300 ms/ },
    )
  })

  test('concurrent switches both take effect (each builds on the target the previous one left)', async () => {
    const { url, dbname } = await freshDatabase('concurrentswitch')
    await admin(`CREATE DATABASE "${dbname}_v2"`)
    try {
      await using db = new Database({ connectionString: url, env: cleanEnv() })
      await db.connect()
      await Promise.all([db.changeVersion('v2'), db.setPooling('per-transaction')])
      assert.equal(db.dbname, `${dbname}_v2`)
      assert.equal(db.pooling, 'per-transaction')
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${dbname}_v2" WITH (FORCE)`)
    }
  })
})

describe('failing onConnect hooks', () => {
  test('a missing onConnect module fails when the Database is made (HOOK_NOT_FOUND naming the file and the directory), not at the first query', async () => {
    const { url } = await freshDatabase('hookmissing')
    const made = (): Database => new Database({ connectionString: url, env: cleanEnv(), onConnect: './no-such-dir/set-timeout.ts' })
    assert.throws(made, (error: PgcrewError) => {
      assert.equal(error.code, 'HOOK_NOT_FOUND')
      assert.ok(error.message.includes(join(process.cwd(), 'no-such-dir/set-timeout.ts')), error.message)
      assert.ok(error.message.includes(`resolved against the current directory ${process.cwd()}`), error.message)
      return true
    })
    const db = new Database({ connectionString: url, env: cleanEnv() })
    assert.throws(() => db.onConnect('/nonexistent/hook.js'), { code: 'HOOK_NOT_FOUND', message: /\/nonexistent\/hook\.js does not exist/ })
    await db.close()
  })

  test('per-transaction mode: a connection whose onConnect hook throws is closed, not left open on the server', async () => {
    const { url } = await freshDatabase('hookleak')
    const app = `hookleak-${process.pid}`
    let fail = false
    await using db = new Database({
      connectionString: url,
      env: cleanEnv(),
      pooling: 'per-transaction',
      applicationName: app,
      onConnect: async () => {
        if (fail) throw new Error('hook failed on purpose')
      },
    })
    await db.connect()
    fail = true
    for (let i = 0; i < 3; i++) await assert.rejects(db.query('SELECT 1'), /hook failed on purpose/)
    const open = async () => (await admin<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [app]))[0]!.n
    assert.ok(await eventually(async () => (await open()) === 0), `${await open()} sessions of failed hooks are still open`)
  })
})

describe('memory', () => {
  // node:test does not expose gc(); turn it on for this process and fetch it from a fresh context.
  const gc = (): void => {
    setFlagsFromString('--expose-gc')
    ;(runInNewContext('gc') as () => void)()
  }
  const heapAfterGc = (): number => {
    gc()
    return process.memoryUsage().heapUsed
  }

  test('statements and transactions leave nothing behind: 12,000 of them do not grow the heap (regression: every acquire left a reaction on a promise that never settles, about 700 bytes per statement)', async () => {
    const { url } = await freshDatabase('heap')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 4 })
    const burst = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i += 4) {
        await Promise.all([db.query('SELECT 1'), db.query('SELECT $1::int', [i]), db.transaction((tx) => tx.query('SELECT 2')), db.query('SELECT 3')])
      }
    }
    await burst(1000) // warm: pool filled, code compiled
    const before = heapAfterGc()
    await burst(12_000)
    const grown = heapAfterGc() - before
    assert.ok(grown < 3_000_000, `the heap grew by ${(grown / 1e6).toFixed(1)} MB over 12,000 statements`)
  })
})
