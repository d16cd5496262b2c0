// The session lock that says "this process is alive" (a run's history, a machine's engine pool):
// held on a connection of its own, taken again after its session is lost for as long as its holder
// lives, and its gate closed while it is missing.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { startTempCluster } from '../../src/cluster/temp-cluster.ts'
import { Database } from '../../src/database/database.ts'
import { SessionLock } from '../../src/database/session-lock.ts'
import { cleanEnv, eventually, freshDatabase } from '../helpers.ts'

/** Whether some session holds the advisory lock `key` (a single bigint: classid, objid, objsubid 1). */
async function lockHeld(url: string, key: bigint): Promise<boolean> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ held: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND classid::bigint = ($1::bigint >> 32) & 4294967295 AND objid::bigint = $1::bigint & 4294967295) AS held`,
      [String(key)],
    )
    return rows[0]!.held
  } finally {
    await client.end()
  }
}

/** Whether a promise is still pending after `ms`. */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol('pending')
  const settled = await Promise.race([
    promise.then(
      () => 'settled',
      () => 'settled',
    ),
    new Promise((r) => setTimeout(() => r(pending), ms)),
  ])
  return settled === pending
}

describe('session lock', () => {
  test('holds its key on a session of its own, and takes it again at once when that backend is killed', async () => {
    const { url } = await freshDatabase('slkill')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
    const back: number[] = []
    const lock = await SessionLock.open(db, { applicationName: 'pgcrew lock test', onBack: (ms) => back.push(ms) })
    try {
      await lock.hold(42n)
      assert.equal(lock.held, true)
      assert.equal(await lockHeld(url, 42n), true)
      await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgcrew lock test' AND datname = current_database()")
      assert.ok(await eventually(async () => back.length === 1 && lock.held, 10_000), 'the lock was not taken again')
      assert.equal(await lockHeld(url, 42n), true)
      await lock.gate
      // A new key gives up the old one on the same session.
      await lock.hold(43n)
      assert.deepEqual([await lockHeld(url, 42n), await lockHeld(url, 43n)], [false, true])
    } finally {
      await lock.close()
    }
    assert.equal(await lockHeld(url, 43n), false, 'close gave the lock back')
  })

  test('a server away for longer than the retry window: the gate stays shut, and the lock is taken again once the server is back', async () => {
    const cluster = await startTempCluster()
    try {
      await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 1 })
      const lost: unknown[] = []
      const back: number[] = []
      // A window of 300 ms: the first take gives up after it; a take after a loss never does (the holder still lives).
      const lock = await SessionLock.open(db, {
        applicationName: 'pgcrew lock test',
        retry: { windowMillis: 300, firstDelayMillis: 50, maxDelayMillis: 200 },
        onLost: (e) => lost.push(e),
        onBack: (ms) => back.push(ms),
      })
      try {
        await lock.hold(7n)
        await cluster.stopServer()
        assert.ok(await eventually(async () => lost.length === 1, 10_000), 'the loss was not seen')
        assert.equal(lock.held, false)
        assert.equal(await pendingAfter(lock.gate, 1500), true, 'the gate opened while the lock was missing')
        await cluster.startServer()
        assert.ok(await eventually(async () => lock.held, 15_000), 'the lock was not taken again after the server came back (it gave up after the window)')
        await lock.gate
        assert.equal(await lockHeld(cluster.url, 7n), true)
        assert.equal(back.length, 1)
        assert.ok(back[0]! >= 1500, `back after ${back[0]} ms`)
      } finally {
        await lock.close()
      }
    } finally {
      await cluster.stop()
    }
  })

  test('closed while it is being taken again, its gate rejects (it never opens as if the lock were held)', async () => {
    const cluster = await startTempCluster()
    try {
      await using db = new Database({ connectionString: cluster.url, env: cleanEnv(), max: 1 })
      const lost: unknown[] = []
      const lock = await SessionLock.open(db, { applicationName: 'pgcrew lock test', retry: { firstDelayMillis: 50, maxDelayMillis: 200 }, onLost: (e) => lost.push(e) })
      await lock.hold(9n)
      await cluster.stopServer()
      assert.ok(await eventually(async () => lost.length === 1, 10_000), 'the loss was not seen')
      const gate = lock.gate
      await lock.close()
      const started = Date.now()
      await assert.rejects(gate, /closed/)
      assert.ok(Date.now() - started < 1000, 'the retake went on after close')
      assert.equal(lock.held, false)
    } finally {
      await cluster.stop()
    }
  })
})
