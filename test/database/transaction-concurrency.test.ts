import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { copyFrom } from '../../src/toolkit/copy.ts'
import { Database } from '../../src/database/database.ts'
import type { Transaction } from '../../src/database/transaction.ts'
import { cleanEnv, freshDatabase } from '../helpers.ts'

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
  test("savepoints started together take turns, so a failing one undoes only its own work (regression: a sibling's insert vanished while it reported success)", async () => {
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
        tx
          .transaction(async (sp) => {
            await pause(40)
            await sp.query('SELECT 1/0')
          })
          .catch((e: Error) => `b: ${e.message}`),
        tx.query("INSERT INTO t VALUES ('outer')").then(() => 'outer'),
      ]),
    )
    assert.deepEqual(viaTx, ['a', 'b: division by zero', 'outer'])
    assert.deepEqual(
      (await db.query('SELECT name FROM t ORDER BY name')).rows.map((r) => r.name),
      ['a', 'outer'],
    )
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
        db
          .transaction(async () => {
            await pause(40)
            await db.query('SELECT 1/0')
          })
          .catch((e: Error) => `d: ${e.message}`),
      ]),
    )
    assert.deepEqual(viaDb, ['c', 'd: division by zero'])
    assert.deepEqual(
      (await db.query('SELECT name FROM t ORDER BY name')).rows.map((r) => r.name),
      ['c', 'c2'],
    )
  })

  test('calling the outer transaction from inside its own savepoint nests there (it cannot wait for itself)', async () => {
    const { url } = await freshDatabase('busy')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    await db.query('CREATE TABLE t (name text)')
    const seen: unknown[] = []
    await db.transaction(async (tx) => {
      const outcome = await tx
        .transaction(async (sp) => {
          seen.push(
            await tx.transaction(async (inner) => {
              await inner.query("INSERT INTO t VALUES ('nested')")
              return `nested at depth ${inner.depth}`
            }),
          )
          seen.push((await tx.query('SELECT 7 AS n')).rows[0].n + (await sp.query('SELECT 1 AS n')).rows[0].n)
          throw new Error('undo the savepoint')
        })
        .catch((e: Error) => e.message)
      seen.push(outcome)
      await tx.query("INSERT INTO t VALUES ('kept')")
    })
    assert.deepEqual(seen, ['nested at depth 2', 8, 'undo the savepoint'])
    assert.deepEqual(
      (await db.query('SELECT name FROM t')).rows.map((r) => r.name),
      ['kept'],
    )
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
    assert.deepEqual(
      (await db.query('SELECT v FROM t')).rows.map((r) => r.v),
      ['outer'],
    )
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
      await assert.rejects(
        beside(db, (s) => s.query('SELECT pg_sleep(0.05)'), use),
        { code: 'TRANSACTION_INTERLEAVED' },
        name,
      )
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
    assert.deepEqual(
      (await db.query('SELECT v FROM t')).rows.map((r) => r.v),
      ['outer'],
    )
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
    assert.deepEqual(
      rows.map((r) => r.note),
      ['ghost'],
      'the ghost insert was swallowed by another transaction',
    )
  })

  test('using a Transaction object after it ended is a TRANSACTION_FINISHED error', async () => {
    const { url } = await freshDatabase('finished')
    await using db = new Database({ connectionString: url, env: cleanEnv() })
    const leaked = await db.transaction(async (tx) => tx)
    await assert.rejects(leaked.query('SELECT 1'), { code: 'TRANSACTION_FINISHED' })
  })
})
