// Regressions found in review: each test is named after what broke.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, test } from 'node:test'
import pg from 'pg'
import { copyFrom } from '../src/copy.ts'
import { Database } from '../src/database.ts'
import type { Transaction } from '../src/transaction.ts'
import { realmSize, trackPgPools } from '../src/realm.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, scratchDir, server, urlFor, writePgpass } from './helpers.ts'

/** Wait until a session of this application is inside pg_sleep (the work really is in flight). */
const sleeping = (app: string) =>
  eventually(async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'", [app]))[0]!.n > 0)

const fixture = (name: string) => new URL(`./fixtures/workers/${name}.ts`, import.meta.url)

describe('crews', () => {
  test('a crew made before connect() reaches the profile the master chose (PGCREW_PROFILE in a custom env)', async () => {
    const { dbname } = await freshDatabase('crewprofile')
    const role = await freshRole('crewprofile')
    const { host, port } = server()
    const dir = scratchDir()
    const profilesFile = join(dir, 'profiles.ini')
    writeFileSync(profilesFile, `[lab]\nhost = ${host}\nport = ${port}\ndbname = ${dbname}\nuser = ${role.name}\nreadonly = false\n`)
    const pgpassFile = writePgpass(dir, [`${host}:${port}:*:${role.name}:${role.password}`])
    await using db = new Database({ profilesFile, pgpassFile, env: cleanEnv({ PGCREW_PROFILE: 'lab' }), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    const who = await crew.run<{ u: string; d: string }>({ op: 'whoami' })
    assert.deepEqual([who.u, who.d], [role.name, dbname])
    assert.equal(db.profile, 'lab')
  })

  test('close() after a worker crashed does not wait for the dead worker', { timeout: 20_000 }, async () => {
    const { url } = await freshDatabase('crewclosecrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const crew = await db.crew({ worker: fixture('echo'), threads: 1, closeTimeoutMillis: 60_000 })
    await crew.run({ op: 'whoami' })
    await assert.rejects(crew.run({ op: 'exit' }), { code: 'WORKER_CRASHED' })
    assert.equal(crew.crashes, 1)
    await crew.close() // with the dead worker still expected, this waited closeTimeoutMillis (60 s)
  })

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

/**
 * A transaction that opens a savepoint doing `inner` and then failing, and meanwhile, once the
 * savepoint is open (its SAVEPOINT on the wire), runs `outside` on the outer transaction: on the
 * server that work lands inside the savepoint.
 */
function beside(db: Database, inner: (sp: Transaction) => Promise<unknown>, outside: (tx: Transaction) => Promise<unknown>): Promise<void> {
  return db.transaction(async (tx) => {
    const sp = tx
      .transaction(async (s) => {
        await inner(s)
        throw new Error('inner fails')
      })
      .catch(() => {})
    await null
    await outside(tx)
    await sp
  })
}

describe('transactions and async context', () => {
  test('savepoints started together take turns, so a failing one undoes only its own work (regression: a sibling\'s insert vanished while it reported success)', async () => {
    const { url } = await freshDatabase('siblings')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (name text)')
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))
    // Through the Transaction objects…
    const viaTx = await db.transaction(async (tx) =>
      Promise.all([
        tx.transaction(async (sp) => {
          await pause(20)
          await sp.query("INSERT INTO t VALUES ('a')")
          await pause(50)
          return 'a'
        }),
        tx.transaction(async (sp) => {
          await pause(40)
          await sp.query('SELECT 1/0')
        }).catch((e: Error) => `b: ${e.message}`),
        tx.query("INSERT INTO t VALUES ('outer')").then(() => 'outer'),
      ]),
    )
    assert.deepEqual(viaTx, ['a', 'b: division by zero', 'outer'])
    assert.deepEqual((await db.query('SELECT name FROM t ORDER BY name')).rows.map((r) => r.name), ['a', 'outer'])
    // …and through db.transaction / db.query inside a transaction (the async context).
    await db.query('TRUNCATE t')
    const viaDb = await db.transaction(async () =>
      Promise.all([
        db.transaction(async () => {
          await pause(20)
          await db.query("INSERT INTO t VALUES ('c')")
          await db.transaction(() => db.query("INSERT INTO t VALUES ('c2')")) // nests inside c
          await pause(50)
          return 'c'
        }),
        db.transaction(async () => {
          await pause(40)
          await db.query('SELECT 1/0')
        }).catch((e: Error) => `d: ${e.message}`),
      ]),
    )
    assert.deepEqual(viaDb, ['c', 'd: division by zero'])
    assert.deepEqual((await db.query('SELECT name FROM t ORDER BY name')).rows.map((r) => r.name), ['c', 'c2'])
  })

  test('calling the outer transaction from inside its own savepoint nests there (it cannot wait for itself)', async () => {
    const { url } = await freshDatabase('busy')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (name text)')
    const seen: unknown[] = []
    await db.transaction(async (tx) => {
      const outcome = await tx
        .transaction(async (sp) => {
          seen.push(await tx.transaction(async (inner) => {
            await inner.query("INSERT INTO t VALUES ('nested')")
            return `nested at depth ${inner.depth}`
          }))
          seen.push((await tx.query('SELECT 7 AS n')).rows[0].n + (await sp.query('SELECT 1 AS n')).rows[0].n)
          throw new Error('undo the savepoint')
        })
        .catch((e: Error) => e.message)
      seen.push(outcome)
      await tx.query("INSERT INTO t VALUES ('kept')")
    })
    assert.deepEqual(seen, ['nested at depth 2', 8, 'undo the savepoint'])
    assert.deepEqual((await db.query('SELECT name FROM t')).rows.map((r) => r.name), ['kept'])
  })

  test('when a savepoint fails a Promise.all, no sibling statement runs on its own after the rollback (regression: item 2 was committed outside the rolled-back transaction)', async () => {
    const { url } = await freshDatabase('allfail')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await db.query('CREATE TABLE t (v int PRIMARY KEY)')
    await assert.rejects(
      db.transaction(async () => {
        await Promise.all(
          [1, 2, 3, 4].map((i) =>
            db.transaction(async () => {
              await db.query('INSERT INTO t VALUES ($1)', [i])
              if (i === 1) throw new Error('item 1 fails')
            }),
          ),
        )
      }),
      /item 1 fails/,
    )
    await new Promise((r) => setTimeout(r, 200)) // let the queued siblings try
    assert.deepEqual((await db.query('SELECT v FROM t')).rows, [])
  })

  test("a rolled-back savepoint's straggler does not go on in the enclosing transaction (regression: it was committed there)", async () => {
    const { url } = await freshDatabase('straggler')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await db.query('CREATE TABLE t (v text)')
    let straggler!: Promise<unknown>
    const outcome = await db.transaction(async () => {
      const failed = await db
        .transaction(async () => {
          straggler = new Promise((r) => setTimeout(r, 50)).then(() => db.query("INSERT INTO t VALUES ('from the failed savepoint')"))
          straggler.catch(() => {})
          await db.query('SELECT 1/0')
        })
        .catch((e: { code?: string }) => e.code)
      await straggler.catch(() => {}) // the outer transaction is still open when it fires
      return failed
    })
    assert.equal(outcome, '22012')
    await assert.rejects(straggler, { code: 'TRANSACTION_FINISHED' })
    assert.deepEqual((await db.query('SELECT v FROM t')).rows, [])
  })

  test('a statement sent while a savepoint is being rolled back runs after it, in the transaction: no false TRANSACTION_INTERLEAVED', async () => {
    const { url } = await freshDatabase('rollbackwindow')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (v text)')
    await db.transaction(async (tx) => {
      let opened!: () => void
      const gate = new Promise<void>((r) => (opened = r))
      await Promise.all([
        tx
          .transaction(async (sp) => {
            await sp.query('SELECT 1')
            opened()
            throw new Error('validation failed')
          })
          .catch(() => {}),
        (async () => {
          await gate
          await new Promise((r) => setImmediate(r)) // ROLLBACK TO is on the wire now
          await tx.query("INSERT INTO t VALUES ('outer')")
        })(),
      ])
    })
    assert.deepEqual((await db.query('SELECT v FROM t')).rows.map((r) => r.v), ['outer'])
  })

  test('COPY, db.withClient and prepared statements outside an open savepoint are noted like statements: nothing is lost silently', async () => {
    const { url } = await freshDatabase('rawpaths')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (v text)')
    const uses: Array<[string, (tx: Transaction) => Promise<unknown>]> = [
      ['copyFrom', (tx) => copyFrom(tx, 't', [['copied']])],
      ['withClient', () => db.withClient((c) => c.query("INSERT INTO t VALUES ('raw')"))],
      ['prepared', async (tx) => (await db.prepare("INSERT INTO t VALUES ('prepared')")).query([], tx)],
    ]
    for (const [name, use] of uses) {
      await assert.rejects(beside(db, (s) => s.query('SELECT pg_sleep(0.05)'), use), { code: 'TRANSACTION_INTERLEAVED' }, name)
    }
    assert.deepEqual((await db.query('SELECT v FROM t')).rows, [])
  })

  test('work started outside a savepoint and awaited inside it does not hang (regression)', { timeout: 15_000 }, async () => {
    const { url } = await freshDatabase('prefetch')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const lookup = async () => {
      const a = await db.query('SELECT 1 AS a')
      const b = await db.query('SELECT 2 AS b')
      const c = await db.query('SELECT 3 AS c')
      return [a.rows[0].a, b.rows[0].b, c.rows[0].c]
    }
    const result = await db.transaction(async () => {
      const prefetch = lookup()
      return db.transaction(async (sp) => {
        await sp.query('SELECT 1')
        return prefetch
      })
    })
    assert.deepEqual(result, [1, 2, 3])
  })

  test('a statement issued outside a savepoint that then rolls back was undone with it: the transaction refuses to commit (TRANSACTION_INTERLEAVED), nothing is lost silently', async () => {
    const { url } = await freshDatabase('interleaved')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (v text)')
    await assert.rejects(
      beside(
        db,
        (s) => s.query("INSERT INTO t VALUES ('inner')"),
        (tx) => tx.query("INSERT INTO t VALUES ('outer')"),
      ),
      { code: 'TRANSACTION_INTERLEAVED', message: /await each savepoint before issuing statements outside it/ },
    )
    assert.deepEqual((await db.query('SELECT v FROM t')).rows, [])
    // Sent before the savepoint opened, the same statement is the outer transaction's own and commits.
    await db.transaction(async (tx) => {
      const sp = tx.transaction(async () => {
        throw new Error('inner fails')
      })
      await tx.query("INSERT INTO t VALUES ('outer')")
      await sp.catch(() => {})
    })
    assert.deepEqual((await db.query('SELECT v FROM t')).rows.map((r) => r.v), ['outer'])
  })

  test('a query started inside a transaction but run after it ended does not join the next session on that connection', async () => {
    const { url } = await freshDatabase('ghost')
    // max 2: tx2 gets tx1's idle connection back; the ghost needs a second one.
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    await db.query('CREATE TABLE t (note text)')
    let ghost!: Promise<unknown>
    await db.transaction(async () => {
      ghost = new Promise((r) => setTimeout(r, 50)).then(() => db.query("INSERT INTO t VALUES ('ghost')"))
    })
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query("INSERT INTO t VALUES ('tx2')")
        await ghost
        throw new Error('roll back tx2')
      }),
      /roll back tx2/,
    )
    const { rows } = await db.query('SELECT note FROM t ORDER BY note')
    assert.deepEqual(rows.map((r) => r.note), ['ghost'], 'the ghost insert was swallowed by another transaction')
  })

  test('using a Transaction object after it ended is a TRANSACTION_FINISHED error', async () => {
    const { url } = await freshDatabase('finished')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    const leaked = await db.transaction(async (tx) => tx)
    await assert.rejects(leaked.query('SELECT 1'), { code: 'TRANSACTION_FINISHED' })
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
        const busy = db.query('SELECT pg_sleep(0.3)')
        assert.ok(await sleeping(`switch-queued-${pooling}`))
        const queued = db.query('SELECT current_database() AS d') // waits: max is 1
        await db.changeVersion('2')
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
        backends = (await admin<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND (query LIKE 'LISTEN%' OR query LIKE '%pg_sleep%' OR query LIKE 'SELECT pg_backend_pid() AS pid')", [new URL(url).pathname.slice(1)])).map((r) => r.pid)
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
    assert.ok(await eventually(async () => (await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'queued-test' AND query LIKE 'SELECT pg_sleep%'"))[0]!.n === 1))
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

  test('a timed advisory lock that fails half-way inside a transaction leaves no session lock on a pooled connection', async () => {
    const { url, dbname } = await freshDatabase('halfway')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    await using other = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const blocker = (await other.advisoryLock(2n))!
    await assert.rejects(
      db.transaction(async (tx) => {
        const { advisoryLock } = await import('../src/advisory-lock.ts')
        await advisoryLock(tx, [1n, 2n], { wait: 200 })
      }),
      { code: '55P03' },
    )
    await blocker.release()
    const held = await admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = $1", [dbname])
    assert.equal(held[0]!.n, 0, 'key 1 is still held by a pooled connection')
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

  test('a listener made with listen(db) ends when the Database is closed, instead of retrying forever', { timeout: 10_000 }, async () => {
    const { listen } = await import('../src/listen.ts')
    const { url } = await freshDatabase('listenclosed')
    const db = new Database({ connectionString: url, env: cleanEnv(), closeTimeoutMillis: 100, onWarning: () => {} })
    const l = await listen(db, 'ch', { reconnectDelayMillis: 20 })
    const ended = l.next().then(
      (v) => v,
      (e: Error & { code?: string }) => e.code,
    )
    await db.close()
    assert.ok([undefined, 'LISTEN_CONNECTION_LOST'].includes((await ended) as string | undefined))
  })
})

describe('failing onConnect hooks', () => {
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
