// Regressions found in review: each test is named after what broke.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { describe, test } from 'node:test'
import pg from 'pg'
import { Database } from '../src/database.ts'
import { realmSize, trackPgPools } from '../src/realm.ts'
import { admin, cleanEnv, freshDatabase, freshRole, scratchDir, server, urlFor, writePgpass } from './helpers.ts'

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
  })
})

describe('transactions and async context', () => {
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
    const db = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
    const work = db.transaction(async (tx) => (await tx.query('SELECT pg_sleep(0.3), 42 AS answer')).rows[0].answer)
    await new Promise((r) => setTimeout(r, 100))
    await db.close()
    assert.equal(await work, 42)
  })

  test('a switch lets work in flight on the old connection finish', async () => {
    const { url, dbname } = await freshDatabase('switchinflight')
    await admin(`CREATE DATABASE "${dbname}_2"`)
    try {
      await using db = new Database({ connectionString: url, env: cleanEnv() })
      await db.connect()
      const work = db.transaction(async (tx) => (await tx.query('SELECT pg_sleep(0.3), current_database() AS d')).rows[0].d)
      await new Promise((r) => setTimeout(r, 100))
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
