// db.scope(fn): one pinned connection for everything fn does, reset before anyone else gets it.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole } from '../helpers.ts'

const pid = async (db: Database): Promise<number> => (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid

/** Resolves once `n` callers are waiting on it: overlaps scopes for real instead of hoping they overlap. */
function barrier(n: number): () => Promise<void> {
  let waiting = 0
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return () => {
    if (++waiting === n) open()
    return opened
  }
}

describe('db.scope', () => {
  test('concurrent scopes never share a connection; within one, every statement runs on the same backend', async () => {
    const { url } = await freshDatabase('scopes')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 4 })
    const meet = barrier(3)
    const seen = await Promise.all(
      [1, 2, 3].map((i) =>
        db.scope(async () => {
          const pids = [await pid(db)]
          await meet()
          // A plain query, a transaction, a toolkit call and interleaving with the other scopes.
          pids.push(await pid(db), await db.transaction(async (tx) => (await tx.query('SELECT pg_backend_pid() AS pid')).rows[0].pid))
          for await (const row of db.cursor<{ pid: number }>('SELECT pg_backend_pid() AS pid')) pids.push(row.pid)
          await db.query('SELECT pg_sleep(0.02 * $1)', [i])
          pids.push(await pid(db))
          return pids
        }),
      ),
    )
    for (const pids of seen) assert.equal(new Set(pids).size, 1, `one scope used backends ${pids}`)
    assert.equal(new Set(seen.map((pids) => pids[0])).size, 3, `concurrent scopes shared a backend: ${seen.map((p) => p[0])}`)
  })

  test('session state (a SET, a temp table, a session advisory lock, a role) does not reach the next borrower of the connection', async () => {
    const { url } = await freshDatabase('scopeleak')
    // One connection in the pool: the next borrower gets the very backend the scope used.
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const other = await freshRole('scopeother')
    const inside = await db.scope(async () => {
      await db.query("SET statement_timeout = '1234ms'")
      await db.query('CREATE TEMP TABLE scoped (x int)')
      await db.copyFrom('scoped', [[1], [2], [3]])
      await db.query('SELECT pg_advisory_lock(4242)')
      // Everything in the scope sees its own session state.
      const { rows } = await db.query("SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout, (SELECT count(*)::int FROM scoped) AS n")
      await db.query(`SET ROLE "${other.name}"`)
      return { ...rows[0], role: (await db.query('SELECT current_user AS u')).rows[0].u }
    })
    assert.deepEqual({ ...inside, pid: 0 }, { pid: 0, timeout: '1234ms', n: 3, role: other.name })
    const after = (
      await db.query<{ pid: number; timeout: string; temp: string | null; locks: number; role: string }>(
        "SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout, to_regclass('pg_temp.scoped')::text AS temp, (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, current_user AS role",
      )
    ).rows[0]!
    assert.equal(after.pid, inside.pid, 'the connection was destroyed, not reset and reused')
    assert.deepEqual(
      { timeout: after.timeout, temp: after.temp, locks: after.locks, role: after.role },
      { timeout: '0', temp: null, locks: 0, role: (await admin<{ u: string }>('SELECT current_user AS u'))[0]!.u },
    )
    assert.deepEqual(await admin('SELECT pg_try_advisory_lock(4242) AS free'), [{ free: true }])
  })

  test('nested scopes and transactions inside a scope use its connection; its transactions run one at a time', async () => {
    const { url } = await freshDatabase('scopenest')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 4 })
    await db.query('CREATE TABLE log (scope_pid int, n int)')
    await db.scope(async () => {
      const outer = await pid(db)
      await db.query('CREATE TEMP TABLE mine (n int)')
      assert.equal(await db.scope(async () => pid(db)), outer)
      // Side by side, yet one after the other on the one connection: each commits or rolls back only its own work.
      const results = await Promise.allSettled(
        [1, 2, 3].map((n) =>
          db.transaction(async (tx) => {
            await tx.query('INSERT INTO mine VALUES ($1)', [n])
            await tx.query('INSERT INTO log VALUES (pg_backend_pid(), $1)', [n])
            await tx.query('SELECT pg_sleep(0.02)')
            if (n === 2) throw new Error('roll back two')
          }),
        ),
      )
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      )
      assert.deepEqual((await db.query('SELECT n FROM mine ORDER BY n')).rows, [{ n: 1 }, { n: 3 }])
      assert.deepEqual((await db.query('SELECT DISTINCT scope_pid FROM log')).rows, [{ scope_pid: outer }])
    })
  })

  test("an onConnect hook is every connection's baseline: a scope's reset keeps what the hook set", async () => {
    const { url } = await freshDatabase('scopehook')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1, onConnect: (client) => client.query('SET search_path = hooked, public').then(() => {}) })
    const before = await pid(db)
    await db.scope(async () => {
      await db.query('SET search_path = scoped')
      assert.equal((await db.query('SHOW search_path')).rows[0].search_path, 'scoped')
    })
    assert.deepEqual((await db.query('SELECT pg_backend_pid() AS pid, current_setting($1) AS path', ['search_path'])).rows, [{ pid: before, path: 'hooked, public' }])
  })

  test('a connection that cannot be reset (a transaction left open) is destroyed, not pooled', async () => {
    const { url } = await freshDatabase('scopeopen')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const used = await db.scope(async () => {
      await db.query('BEGIN')
      await db.query('CREATE TEMP TABLE half_done (x int)')
      return pid(db)
    })
    assert.ok(await eventually(async () => (await admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [used])).length === 0), 'the backend is still there')
    const next = (await db.query("SELECT pg_backend_pid() AS pid, to_regclass('pg_temp.half_done')::text AS t")).rows[0]
    assert.notEqual(next.pid, used)
    assert.equal(next.t, null)
  })

  test('a scope whose connection is killed mid-way: its next statement fails with a connection-lost error, and the pool works afterwards', async () => {
    const { url } = await freshDatabase('scopekill')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    let killed = 0
    const error = await db
      .scope(async () => {
        await db.query('CREATE TEMP TABLE before_kill (x int)')
        killed = await pid(db)
        await admin('SELECT pg_terminate_backend($1)', [killed])
        assert.ok(await eventually(async () => (await admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [killed])).length === 0), 'the backend is still there')
        await db.query('SELECT 1')
        return 'the statement after the kill succeeded'
      })
      .catch((e: unknown) => e)
    assert.ok(error instanceof Error, String(error))
    assert.equal((error as { code?: string }).code, 'SCOPE_CONNECTION_LOST', (error as Error).message)
    assert.match((error as Error).message, /^the connection of this db\.scope\(\) was lost \(terminating connection due to administrator command\); the session state .* run it again$/)
    // The dead connection did not go back to the pool: the next statement gets a new backend.
    const next = (await db.query("SELECT pg_backend_pid() AS pid, to_regclass('pg_temp.before_kill')::text AS t")).rows[0]
    assert.notEqual(next.pid, killed)
    assert.equal(next.t, null)
    assert.equal(await db.scope(async () => (await db.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n), 1)
  })

  test('per-transaction mode: a scope gets a connection of its own, closed when it ends', async () => {
    const { url } = await freshDatabase('scopepertx')
    await using db = new Database({ connectionString: url, env: cleanEnv(), pooling: 'per-transaction' })
    const pids = await db.scope(async () => {
      await db.query('CREATE TEMP TABLE t (x int)')
      await db.transaction(async (tx) => tx.query('INSERT INTO t VALUES (1)'))
      return [await pid(db), await pid(db), (await db.query('SELECT count(*)::int AS n FROM t')).rows[0].n]
    })
    assert.equal(pids[0], pids[1])
    assert.equal(pids[2], 1)
    // Outside a scope, this mode opens a new connection per statement.
    assert.notEqual(await pid(db), pids[0])
    assert.ok(await eventually(async () => (await admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pids[0]])).length === 0), 'the scope left its connection open')
  })

  test("a statement stray code sends after its scope ended goes to the pool, not to the scope's old connection", async () => {
    const { url } = await freshDatabase('scopestray')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    let late: Promise<number> | undefined
    const used = await db.scope(async () => {
      late = new Promise((resolve) => setTimeout(resolve, 100)).then(() => pid(db))
      // A transaction left open: the scope's connection is destroyed, not pooled, when the scope ends.
      await db.query('BEGIN')
      return pid(db)
    })
    const stray = await late!
    assert.notEqual(stray, used)
  })
})
