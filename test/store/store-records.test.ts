import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { admin, cleanEnv, freshDatabase } from '../helpers.ts'
import { closedGate } from './store-gate.ts'

async function fresh(prefix: string, pooling?: 'per-transaction') {
  const { url, dbname } = await freshDatabase(prefix)
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 4, pooling })
  return { db, url, dbname }
}

/** Count the statements a call sends, by wrapping this Database's query(). */
function countStatements(db: Database): { texts: string[] } {
  const seen = { texts: [] as string[] }
  const query = db.query.bind(db)
  db.query = ((text: string, values?: unknown[]) => {
    seen.texts.push(text)
    return query(text, values)
  }) as typeof db.query
  return seen
}

describe('the store schema', () => {
  test('openStore creates its tables in the pgcrew schema; racing opens are safe; forceDrop starts over', async () => {
    const { db, dbname } = await fresh('storeschema')
    await using _db = db
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(db)))
    const tables = await admin<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'pgcrew' ORDER BY 1", [], dbname)
    assert.deepEqual(
      tables.map((r) => r.t),
      ['config', 'events', 'readings', 'session_messages', 'sessions'],
    )
    await stores[0]!.setConfig('a', 1)
    await stores[0]!.createTables()
    assert.equal(await stores[1]!.getConfig('a'), 1, 'createTables without forceDrop keeps the data')
    await stores[0]!.createTables({ forceDrop: true })
    assert.equal(await stores[1]!.getConfig('a'), undefined)
    const other = await db.store({ schema: 'My Store' })
    await other.setConfig('b', 2)
    assert.equal((await admin<{ n: number }>('SELECT count(*)::int AS n FROM "My Store".config', [], dbname))[0]!.n, 1)
    await assert.rejects(openStore(db, { schemq: 'x' } as never), { code: 'UNKNOWN_OPTION', message: /schemq/ })
    await assert.rejects(openStore(db, { persist: '/tmp/x' }), { code: 'INVALID_OPTION', message: /persist/ })
  })
})

describe('config', () => {
  for (const pooling of [undefined, 'per-transaction'] as const) {
    test(`setConfig saves updates (read back from a second connection), onlyIfMissing keeps the first (${pooling ?? 'pooled'})`, async () => {
      const { db, url } = await fresh('storeconfig', pooling)
      await using _db = db
      const store = await openStore(db)
      assert.equal(await store.getConfig('threshold'), undefined)
      assert.equal(await store.setConfig('threshold', 5), 5)
      assert.deepEqual(await store.setConfig('threshold', { level: 7, tags: ['a'] }), { level: 7, tags: ['a'] })
      assert.deepEqual(await store.setConfig('threshold', 1, { onlyIfMissing: true }), { level: 7, tags: ['a'] }, 'onlyIfMissing resolves to the value kept')
      assert.equal(await store.setConfig('fresh', 'first', { onlyIfMissing: true }), 'first')
      await using second = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
      const again = await openStore(second)
      assert.deepEqual(await again.getConfig('threshold'), { level: 7, tags: ['a'] })
      assert.equal(await again.getConfig('fresh'), 'first')
      assert.deepEqual(
        (await again.configEntries()).map((e) => e.key),
        ['fresh', 'threshold'],
      )
      assert.equal(await again.deleteConfig('fresh'), true)
      assert.equal(await store.getConfig('fresh'), undefined)
      await assert.rejects(store.setConfig('bad', undefined), { code: 'STORE_INVALID_VALUE' })
      await assert.rejects(store.setConfig('bad', { n: NaN }), { code: 'STORE_INVALID_VALUE', message: /NaN has no JSON form/ })
      await assert.rejects(store.setConfig('bad', 10n), { code: 'STORE_INVALID_VALUE' })
      await assert.rejects(store.getConfig(''), { code: 'INVALID_OPTION' })
    })
  }
})

describe('readings', () => {
  test('latest: 5 series × 200 readings → 5 × 50 in one statement, newest first', async () => {
    const { db } = await fresh('storereadings')
    await using _db = db
    const store = await openStore(db)
    const t0 = Date.parse('2026-01-01T00:00:00Z')
    for (const s of ['a', 'b', 'c', 'd', 'e']) {
      await store.transaction(async () => {
        for (let i = 0; i < 200; i++) await store.addReading(s, i, { at: new Date(t0 + i * 1000) })
      })
    }
    const seen = countStatements(db)
    const latest = await store.latest()
    assert.equal(seen.texts.length, 1, `latest() sent ${seen.texts.length} statements`)
    assert.equal(latest.length, 250)
    for (const s of ['a', 'b', 'c', 'd', 'e']) {
      const values = latest.filter((r) => r.series === s).map((r) => r.value)
      assert.deepEqual(
        values,
        Array.from({ length: 50 }, (_, i) => 199 - i),
        `series ${s}`,
      )
    }
    assert.deepEqual([...new Set(latest.map((r) => r.series))], ['a', 'b', 'c', 'd', 'e'])
    const two = await store.latest({ series: ['b', 'zz'], since: new Date(t0 + 195_000), limit: 3 })
    assert.equal(seen.texts.length, 2)
    assert.deepEqual(
      two.map((r) => [r.series, r.value]),
      [
        ['b', 199],
        ['b', 198],
        ['b', 197],
      ],
    )
    const session = await store.startSession()
    const r = await store.addReading('temp', 21.5, { session })
    assert.equal(r.sessionId, session)
    assert.ok(r.at instanceof Date)
    assert.deepEqual(
      (await store.latest({ session })).map((x) => [x.series, x.value]),
      [['temp', 21.5]],
      "a session's readings only",
    )
    await assert.rejects(store.addReading('temp', Number.NaN), { code: 'STORE_INVALID_VALUE' })
    await assert.rejects(store.addReading('temp', 'warm' as never), { code: 'STORE_INVALID_VALUE', message: /a reading is a finite number, not "warm"/ })
    await assert.rejects(store.latest({ limit: 0 }), { code: 'INVALID_OPTION' })
  })
})

describe('the event log', () => {
  test('logEvent, events({ since, unhandled }), handle, clearEvents', async () => {
    const { db } = await fresh('storeevents')
    await using _db = db
    const store = await openStore(db)
    const first = await store.logEvent('disk almost full', { severity: 'warning', data: { free: '2%' } })
    assert.equal(first.severity, 'warning')
    assert.deepEqual(first.data, { free: '2%' })
    assert.equal(first.handledAt, null)
    // `at` is the server's clock to the microsecond and comes back as a Date to the millisecond: an
    // event logged in the same millisecond as `second` is "at or after" second.at (a fast machine
    // did it), so the clock moves on to another millisecond first.
    await new Promise((resolve) => setTimeout(resolve, 5))
    const second = await store.logEvent('started')
    assert.ok(first.at < second.at, `${first.at.toISOString()} < ${second.at.toISOString()}`)
    assert.equal(second.severity, 'info')
    const third = await store.logEvent('sensor lost', { severity: 'critical' })
    assert.deepEqual(
      (await store.events()).map((e) => e.description),
      ['disk almost full', 'started', 'sensor lost'],
    )
    const handled = await store.handle(first.id)
    assert.ok(handled.handledAt instanceof Date)
    assert.deepEqual(
      (await store.events({ unhandled: true })).map((e) => e.id),
      [second.id, third.id],
    )
    assert.deepEqual(
      (await store.events({ since: second.at })).map((e) => e.id),
      [second.id, third.id],
    )
    assert.deepEqual(
      (await store.events({ severity: 'warning' })).map((e) => e.id),
      [first.id, third.id],
    )
    assert.deepEqual(
      (await store.events({ limit: 1 })).map((e) => e.id),
      [third.id],
    )
    await assert.rejects(store.handle(999), { code: 'STORE_NOT_FOUND' })
    await assert.rejects(store.logEvent('x', { severity: 'fatal' as never }), { code: 'INVALID_OPTION', message: /debug, info, warning, error, critical/ })
    assert.equal(await store.clearEvents({ handled: true }), 1)
    assert.equal(await store.clearEvents(), 2)
    assert.deepEqual(await store.events(), [])
  })
})

describe('sessions', () => {
  for (const pooling of [undefined, 'per-transaction'] as const) {
    test(`start, queue, latest, last, messages, sessions, stop, delete, flush; ids never reused (${pooling ?? 'pooled'})`, async () => {
      const { db } = await fresh('storesessions', pooling)
      await using _db = db
      const store = await openStore(db)
      await assert.rejects(store.queue('too early'), { code: 'STORE_NO_SESSION', message: /call startSession\(\) first/ })
      const s1 = await store.startSession({ name: 'calibration' })
      assert.equal(store.currentSession, s1)
      // Not awaited one by one: they still land in call order.
      await Promise.all(Array.from({ length: 25 }, (_, i) => store.queue({ i })))
      assert.deepEqual((await store.latest(s1))?.message, { i: 24 })
      assert.deepEqual(
        (await store.last(s1, 10)).map((m) => (m.message as { i: number }).i),
        [15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
      )
      assert.deepEqual(
        (await store.messages(s1)).map((m) => (m.message as { i: number }).i),
        Array.from({ length: 25 }, (_, i) => i),
      )
      const stopped = await store.stopSession()
      assert.ok(stopped.stoppedAt instanceof Date)
      assert.equal(stopped.count, 25)
      assert.equal(store.currentSession, undefined)
      await assert.rejects(store.queue('late'), { code: 'STORE_NO_SESSION' })
      await assert.rejects(store.session(s1).queue('late'), { code: 'STORE_SESSION_STOPPED' })
      const s2 = await store.startSession()
      assert.equal(await store.latest(s2), undefined)
      assert.deepEqual(await store.messages(s2), [])
      const list = await store.sessions()
      assert.deepEqual(
        list.map((s) => [s.id, s.name, s.count, s.stoppedAt === null]),
        [
          [s1, 'calibration', 25, false],
          [s2, null, 0, true],
        ],
      )
      assert.ok(list[0]!.startedAt instanceof Date)
      await store.addReading('x', 1, { session: s2 })
      assert.equal(await store.deleteSession(s2), true)
      assert.equal(await store.deleteSession(s2), false)
      assert.deepEqual(await store.latest({ series: 'x' }), [], "a deleted session's readings go with it")
      await assert.rejects(store.messages(s2), { code: 'STORE_SESSION_NOT_FOUND' })
      const s3 = await store.startSession()
      assert.ok(s3 > s2, `id ${s3} after deleting ${s2}: never reused`)
      await assert.rejects(store.flush({} as never), { code: 'STORE_FLUSH_NOT_CONFIRMED' })
      assert.equal(await store.flush({ confirm: true }), 2)
      assert.deepEqual(await store.sessions(), [])
      assert.ok((await store.startSession()) > s3, 'ids keep counting after flush')
      assert.throws(() => store.session(0), { code: 'INVALID_OPTION' })
    })
  }

  test('8 worker threads queueing into one session at once lose nothing and keep each thread its order', async () => {
    const { db, dbname } = await fresh('storequeue')
    await using _db = db
    const store = await openStore(db)
    const session = await store.startSession()
    await using crew = await db.crew({ worker: new URL('../fixtures/workers/store.ts', import.meta.url), threads: 8 })
    const perThread = 150
    const gate = await closedGate(dbname)
    const runs = Array.from({ length: 8 }, (_, t) => crew.run<{ workerId: number }>({ op: 'queue', schema: 'pgcrew', session, name: `t${t}`, count: perThread, gate: gate.key }))
    await gate.openWhen(8)
    assert.equal(new Set((await Promise.all(runs)).map((r) => r.workerId)).size, 8, 'each task ran in a thread of its own')
    const messages = (await store.messages(session)).map((m) => m.message as { thread: string; i: number })
    assert.equal(messages.length, 8 * perThread)
    for (let t = 0; t < 8; t++) {
      const mine = messages.filter((m) => m.thread === `t${t}`).map((m) => m.i)
      assert.deepEqual(
        mine,
        Array.from({ length: perThread }, (_, i) => i),
        `thread t${t}'s messages in its order`,
      )
    }
    // Eight blocks one after another would switch threads 7 times: more means they queued at once.
    const switches = messages.filter((m, i) => i > 0 && m.thread !== messages[i - 1]!.thread).length
    assert.ok(switches > 7, `the threads queued at the same time (${switches} switches between threads)`)
    assert.equal((await store.sessions())[0]!.count, 8 * perThread)
  })
})
