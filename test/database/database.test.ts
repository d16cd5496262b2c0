import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { inspect } from 'node:util'
import { before, describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { DatabaseError } from '../../src/errors/database-error.ts'
import { admin, cleanEnv, eventually, freshDatabase, freshRole, scratchDir, server, writePgpass } from '../helpers.ts'

// One database with an owner (admin) and a plain role (user), passwords only in a pgpass file,
// as users of a shared server have them.
let dbname: string
let owner: { name: string; password: string }
let reader: { name: string; password: string }
let pgpassFile: string

before(async () => {
  ;({ dbname } = await freshDatabase('core'))
  owner = await freshRole('owner')
  reader = await freshRole('reader')
  await admin(`ALTER DATABASE "${dbname}" OWNER TO "${owner.name}"`)
  await admin(`CREATE TABLE items (id int PRIMARY KEY, note text); ALTER TABLE items OWNER TO "${owner.name}"; GRANT SELECT, INSERT ON items TO "${reader.name}"`, [], dbname)
  const { host, port } = server()
  pgpassFile = writePgpass(scratchDir(), [`${host}:${port}:*:${owner.name}:${owner.password}`, `${host}:${port}:*:${reader.name}:${reader.password}`])
})

function open(extra: Record<string, unknown> = {}): Database {
  const { host, port } = server()
  return new Database({ host, port, dbname, user: reader.name, admin: owner.name, pgpassFile, env: cleanEnv(), ...extra })
}

async function backendsOf(role: string): Promise<{ state: string }[]> {
  return admin<{ state: string }>('SELECT state FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()', [role])
}

describe('become / becomeAdmin / becomeUser', () => {
  test('becomeUser sessions are read-only on the server: an INSERT fails with SQLSTATE 25006', async () => {
    await using db = open()
    await db.becomeUser()
    assert.equal(db.user, reader.name)
    assert.equal(db.readOnly, true)
    const { rows } = await db.query('SHOW default_transaction_read_only')
    assert.equal(rows[0].default_transaction_read_only, 'on')
    await assert.rejects(db.query("INSERT INTO items VALUES (1, 'x')"), (e: unknown) => e instanceof DatabaseError && e.code === '25006' && e.name === 'ReadOnlySqlTransaction')
  })

  test('readOnly: false makes the user role writable', async () => {
    await using db = open({ readonly: false })
    await db.becomeUser()
    await db.query("INSERT INTO items VALUES (100, 'written by reader')")
    assert.equal((await db.query('SELECT count(*)::int AS n FROM items WHERE id = 100')).rows[0].n, 1)
  })

  test('becomeAdmin and become switch current_user, each role with its own pgpass password', async () => {
    await using db = open()
    await db.connect()
    assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, reader.name)
    await db.becomeAdmin()
    assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, owner.name)
    assert.equal(db.readOnly, false)
    await db.query("INSERT INTO items VALUES (2, 'admin write')")
    await db.become(reader.name)
    assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, reader.name)
  })

  test('becomeAdmin without an admin configured is a typed error and keeps the old connection', async () => {
    await using db = open({ admin: undefined })
    await db.connect()
    await assert.rejects(db.becomeAdmin(), { code: 'ADMIN_NOT_CONFIGURED' })
    assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, reader.name)
  })

  test('regression: a 100,000-character role name is not echoed back whole, nor its control characters', async () => {
    await using db = open()
    await db.connect()
    // The server drops a 100,000-character startup packet (ECONNRESET); 5,000 characters reach the
    // role check (which says "no such role" or, under password auth, "authentication failed").
    for (const length of [5_000, 100_000]) {
      await assert.rejects(db.become('\u001b[2J' + 'r'.repeat(length)), (e: Error & { code?: string }) => {
        assert.ok(e.message.length < 500, `${e.message.length} characters`)
        assert.match(e.message, length === 100_000 ? /^cannot connect to \\u001b\[2Jr+…@/ : /role "\\u001b\[2Jr+…" (does not exist )?at \\u001b\[2Jr+…@/)
        assert.doesNotMatch(e.message, /\u001b/)
        return true
      })
    }
    await assert.rejects(db.changeVersion('v;' + 'x'.repeat(100_000)), { code: 'INVALID_OPTION', message: /^dbversion "v;x+…" may hold only/ })
  })

  test('a failed switch keeps the old connection usable and says why', async () => {
    await using db = open()
    await db.connect()
    await assert.rejects(db.become('no_such_role_here'), (e: Error & { code?: string }) => {
      assert.match(e.message, /no_such_role_here/)
      assert.ok(['ROLE_NOT_FOUND', 'AUTHENTICATION_FAILED'].includes(e.code!), e.code)
      return true
    })
    assert.equal(db.user, reader.name)
    assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1)
  })

  test('the explicit password belongs to its user: become() never reuses it for another role', async () => {
    const { host, port } = server()
    await using db = new Database({ host, port, dbname, user: owner.name, password: owner.password, env: cleanEnv() })
    await db.connect()
    await assert.rejects(db.become(reader.name), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'AUTHENTICATION_FAILED')
      assert.match(e.message, new RegExp(`role "${reader.name}"`))
      assert.ok(!e.message.includes(owner.password))
      return true
    })
  })
})

test('regression: a connection string given to connectFromParameters uses its own password', async () => {
  const { host, port } = server()
  await using db = new Database({ host, port, dbname, user: reader.name, env: cleanEnv() })
  await db.connectFromParameters(`pq://${owner.name}:${encodeURIComponent(owner.password)}@${host}:${port}/${dbname}`)
  assert.equal((await db.query('SELECT current_user AS u')).rows[0].u, owner.name)
})

test('regression: COMMIT of a transaction whose error was swallowed always raises 25P02 (no status race)', async () => {
  await using db = open({ user: owner.name })
  for (let i = 0; i < 50; i++) {
    await assert.rejects(
      db.transaction(async (tx) => tx.query('SELECT 1/0').catch(() => {})),
      { code: '25P02' },
    )
  }
})

test("regression: a Database rebuilt from a snapshot keeps the master's target even when a profile file matches nothing here", async () => {
  const { host, port } = server()
  const dir = scratchDir()
  const profilesFile = `${dir}/profiles.ini`
  writeFileSync(profilesFile, '[elsewhere]\nhost = db.elsewhere.example\ndomain = .*\\.elsewhere\\.example\n')
  const connectionString = `postgres://${owner.name}:${encodeURIComponent(owner.password)}@${host}:${port}/${dbname}`
  await using db = new Database({ connectionString, profilesFile, env: cleanEnv({ PGCREW_HOSTNAME: 'node1.here.example' }) })
  await db.connect()
  const copy = Database.fromSnapshot(structuredClone(db.snapshot()), { env: cleanEnv({ PGCREW_HOSTNAME: 'node1.here.example' }) })
  try {
    await copy.connect()
    assert.equal(copy.profile, undefined)
    assert.equal((await copy.query('SELECT current_user AS u')).rows[0].u, owner.name)
  } finally {
    await copy.close()
  }
})

test('an unknown option key says which known key was meant', () => {
  assert.throws(() => new Database({ pasword: 'x' } as never), { code: 'UNKNOWN_OPTION', message: /did you mean "password"/ })
  assert.throws(() => new Database({ idleTimeout: 5 } as never), { code: 'UNKNOWN_OPTION', message: /did you mean "idleTimeoutMillis"/ })
})

test('a loose pgpass file is reported through onWarning, once, and the connection error says it was ignored and how to fix it', async () => {
  const { host, port } = server()
  const loose = writePgpass(scratchDir(), [`${host}:${port}:*:${owner.name}:${owner.password}`], 0o644)
  const warnings: string[] = []
  for (let i = 0; i < 2; i++) {
    await using db = new Database({ host, port, dbname, user: owner.name, pgpassFile: loose, env: cleanEnv(), onWarning: (m) => warnings.push(m) })
    await assert.rejects(db.connect(), {
      code: 'AUTHENTICATION_FAILED',
      message: /no password was found: the password file ".*" was ignored because it has group or world access \(run chmod 600 ".*"\)/,
    })
  }
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /group or world access/)
})

test('regression: many first queries at once share one connect instead of each building a pool', async () => {
  await using db = open({ user: owner.name, max: 3 })
  let physical = 0
  db.onConnect(() => {
    physical++
  })
  await Promise.all(Array.from({ length: 8 }, () => db.query('SELECT 1')))
  // Each racing connect() used to build its own pool (8 pools, 8+ connections).
  assert.ok(physical <= 3, `${physical} physical connections for a pool of 3`)
})

describe('changeVersion', () => {
  test('reaches <base>_<v>, keeps underscores in the base name, and fails safely when it does not exist', async () => {
    const base = `${dbname}_main_db`
    await admin(`CREATE DATABASE "${base}_2_1" OWNER "${owner.name}"`)
    try {
      await using db = open({ dbname: base, user: owner.name })
      await assert.rejects(db.connect(), { code: 'DATABASE_NOT_FOUND' })
      await db.changeVersion('2_1')
      assert.equal(db.dbname, `${base}_2_1`)
      assert.equal(db.dbversion, '2_1')
      assert.equal((await db.query('SELECT current_database() AS d')).rows[0].d, `${base}_2_1`)
      await assert.rejects(db.changeVersion('9'), (e: Error & { code?: string }) => e.code === 'DATABASE_NOT_FOUND' && e.message.includes(`${base}_9`))
      assert.equal((await db.query('SELECT current_database() AS d')).rows[0].d, `${base}_2_1`)
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${base}_2_1" WITH (FORCE)`)
    }
  })
})

describe('pooling modes', () => {
  test('per-transaction mode leaves no backend behind between transactions, even after an error', async () => {
    await using db = open({ pooling: 'per-transaction', user: owner.name })
    await db.transaction(async (tx) => tx.query('SELECT 1'))
    assert.ok(await eventually(async () => (await backendsOf(owner.name)).length === 0), 'a backend stayed after the transaction')
    await assert.rejects(
      db.transaction(async (tx) => tx.query('SELECT 1/0')),
      { code: '22012' },
    )
    assert.ok(await eventually(async () => (await backendsOf(owner.name)).length === 0), 'a backend stayed after a failed transaction')
    assert.equal(db.connectionCount, 0)
  })

  test('per-transaction mode opens at most `max` connections at once', async () => {
    await using db = open({ pooling: 'per-transaction', user: owner.name, max: 2, applicationName: 'max-per-tx' })
    let peak = 0
    await Promise.all(
      Array.from({ length: 6 }, () =>
        db.transaction(async (tx) => {
          await tx.query('SELECT pg_sleep(0.05)')
          // Counted on our side: a closed backend lingers in pg_stat_activity for a moment.
          peak = Math.max(peak, db.connectionCount)
        }),
      ),
    )
    assert.equal(peak, 2)
  })

  test('pooled mode reuses one connection for sequential work', async () => {
    await using db = open({ user: owner.name, max: 4 })
    const pids = new Set<number>()
    for (let i = 0; i < 10; i++) pids.add((await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid)
    assert.equal(pids.size, 1)
  })

  test('pooled mode never hands out a connection left inside a transaction', async () => {
    await using db = open({ user: owner.name, max: 1 })
    await db.query('BEGIN')
    const { rows } = await db.query("SELECT now() = statement_timestamp() AS fresh, current_setting('transaction_isolation') AS iso")
    assert.equal(rows[0].fresh, true, 'the next query ran inside the leaked transaction')
  })

  test('pooled mode never hands out a connection left under another role', async () => {
    await using db = open({ user: owner.name, max: 1 })
    await admin(`GRANT "${reader.name}" TO "${owner.name}"`)
    await db.query(`SET ROLE "${reader.name}"`)
    const { rows } = await db.query('SELECT current_user AS u')
    assert.equal(rows[0].u, owner.name)
  })

  test('an idle backend killed with pg_terminate_backend costs one reconnect and no crash', async () => {
    await using db = open({ user: owner.name, max: 2 })
    const before = (await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    await admin('SELECT pg_terminate_backend($1)', [before])
    assert.ok(await eventually(async () => db.idleErrorCount === 1))
    const after = (await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    assert.notEqual(after, before)
  })

  test('onConnect hooks run on every new physical connection', async () => {
    await using db = open({ user: owner.name, pooling: 'per-transaction' })
    db.onConnect(async (client) => {
      await client.query("SET statement_timeout = '1234ms'")
    })
    for (let i = 0; i < 2; i++) assert.equal((await db.query('SHOW statement_timeout')).rows[0].statement_timeout, '1234ms')
  })
})

describe('transactions', () => {
  test('a nested transaction is a savepoint: its failure keeps the outer work', async () => {
    await using db = open({ user: owner.name })
    await db.transaction(async (tx) => {
      await tx.query("INSERT INTO items VALUES (10, 'outer')")
      await assert.rejects(
        db.transaction(async () => {
          await db.query("INSERT INTO items VALUES (11, 'inner')")
          throw new Error('inner fails')
        }),
        /inner fails/,
      )
    })
    const { rows } = await db.query('SELECT id FROM items WHERE id IN (10, 11) ORDER BY id')
    assert.deepEqual(
      rows.map((r) => r.id),
      [10],
    )
  })

  test('a savepoint whose function swallows an error is rolled back to, rejects with 25P02, and the outer work commits', async () => {
    await using db = open({ user: owner.name })
    let rejection: unknown
    await db.transaction(async (tx) => {
      await tx.query("INSERT INTO items VALUES (12, 'outer-1')")
      await tx
        .transaction(async (s) => {
          await s.query("INSERT INTO items VALUES (13, 'inner')")
          try {
            await s.query('select 1/0')
          } catch {
            // swallowed on purpose: the case under test
          }
        })
        .catch((error) => (rejection = error))
      await tx.query("INSERT INTO items VALUES (14, 'outer-2')")
    })
    assert.equal((rejection as Error).name, 'InFailedSqlTransaction')
    assert.equal((rejection as DatabaseError).code, '25P02')
    assert.match((rejection as Error).message, /savepoint rolled back: a statement inside it failed \(22012: division by zero\)/)
    const { rows } = await db.query('SELECT id FROM items WHERE id BETWEEN 12 AND 14 ORDER BY id')
    assert.deepEqual(
      rows.map((r) => r.id),
      [12, 14],
    )
  })

  test('a swallowed error the bookkeeping cannot see (sent on the raw client) still ends in ROLLBACK TO, not a poisoned transaction', async () => {
    await using db = open({ user: owner.name })
    const outcomes: string[] = []
    await db.transaction(async (tx) => {
      // Awaited on the raw client: known from the transaction status. Not awaited: RELEASE follows it and fails.
      for (const awaited of [true, false]) {
        await tx
          .transaction(async (s) => {
            await s.query("INSERT INTO items VALUES (15, 'inner')")
            const failing = s.client.query('select 1/0').catch(() => {})
            if (awaited) await failing
          })
          .then(
            () => outcomes.push('released'),
            (error) => outcomes.push(`${error.name} ${error.code}`),
          )
      }
      await tx.query("INSERT INTO items VALUES (16, 'outer')")
    })
    assert.deepEqual(outcomes, ['InFailedSqlTransaction 25P02', 'InFailedSqlTransaction 25P02'])
    const { rows } = await db.query('SELECT id FROM items WHERE id IN (15, 16) ORDER BY id')
    assert.deepEqual(
      rows.map((r) => r.id),
      [16],
    )
  })

  test('a swallowed error in a savepoint inside a savepoint undoes only the inner one', async () => {
    await using db = open({ user: owner.name })
    await db.transaction(async (tx) => {
      await tx.transaction(async (middle) => {
        await middle.query("INSERT INTO items VALUES (17, 'middle')")
        await assert.rejects(
          middle.transaction(async (inner) => {
            await inner.query("INSERT INTO items VALUES (18, 'inner')")
            await inner.query('select 1/0').catch(() => {})
          }),
          { code: '25P02' },
        )
        await middle.query("INSERT INTO items VALUES (19, 'middle-after')")
      })
    })
    const { rows } = await db.query('SELECT id FROM items WHERE id BETWEEN 17 AND 19 ORDER BY id')
    assert.deepEqual(
      rows.map((r) => r.id),
      [17, 19],
    )
  })

  test('commit after a swallowed error raises 25P02 instead of pretending', async () => {
    await using db = open({ user: owner.name })
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query("INSERT INTO items VALUES (20, 'lost')")
        await tx.query('SELECT 1/0').catch(() => {})
      }),
      { code: '25P02', name: 'InFailedSqlTransaction' },
    )
    assert.equal((await db.query('SELECT count(*)::int AS n FROM items WHERE id = 20')).rows[0].n, 0)
  })

  test('isolation and read-only options reach the server; bad values are refused', async () => {
    await using db = open({ user: owner.name })
    const iso = await db.transaction(async (tx) => (await tx.query('SHOW transaction_isolation')).rows[0].transaction_isolation, { isolation: 'serializable', readOnly: true })
    assert.equal(iso, 'serializable')
    await assert.rejects(
      db.transaction(async () => 1, { isolation: 'chaos; DROP TABLE items' as never }),
      { code: 'INVALID_OPTION' },
    )
    await assert.rejects(
      db.transaction(async (tx) => tx.transaction(async () => 1, { isolation: 'serializable' })),
      { code: 'INVALID_OPTION' },
    )
  })
})

describe('what a Database shows', () => {
  test('inspect, String and JSON name profile, user, db and state — never the password', async () => {
    const { host, port } = server()
    await using db = new Database({ host, port, dbname, user: owner.name, password: owner.password, env: cleanEnv() })
    await db.connect()
    for (const text of [inspect(db), String(db), JSON.stringify(db), JSON.stringify(db.snapshot()), inspect(db.snapshot()), JSON.stringify(db.connectionParams)]) {
      assert.ok(!text.includes(owner.password), `password leaked in: ${text}`)
    }
    assert.match(inspect(db), new RegExp(`user: '${owner.name}'`))
    assert.match(String(db), new RegExp(`${owner.name}@${host}:${port}/${dbname}`))
    assert.equal(db.connected, true)
    await db.close()
    assert.equal(db.connected, false)
    await assert.rejects(db.query('SELECT 1'), { code: 'CLOSED' })
  })

  test('a snapshot rebuilds the same role, database version and pooling mode', async () => {
    await using db = open({ pooling: 'per-transaction' })
    await db.becomeAdmin()
    const copy = Database.fromSnapshot(structuredClone(db.snapshot()), { env: cleanEnv() })
    await copy.connect()
    try {
      assert.equal(copy.user, owner.name)
      assert.equal(copy.pooling, 'per-transaction')
      assert.equal((await copy.query('SELECT current_user AS u')).rows[0].u, owner.name)
    } finally {
      await copy.close()
    }
  })
})

describe('a failed statement', () => {
  test("the driver's error, caught on a borrowed client, has the stack of the code that awaited it", async () => {
    await using db = open({ user: owner.name })
    let caught: Error | undefined
    await db.withClient(async function codeThatAwaitsTheStatement(client) {
      try {
        await client.query('SELECT 1/0')
      } catch (error) {
        caught = error as Error
      }
    })
    assert.equal((caught as { code?: string } | undefined)?.code, '22012')
    assert.match(caught!.stack ?? '', /codeThatAwaitsTheStatement/)
  })

  test('db.query and tx.query reject with the typed error, and a server error leaves the connection in the pool', async () => {
    await using db = open({ user: owner.name, max: 1 })
    const pid = (await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
    const viaQuery = await db.query('SELECT 1/0').catch((error: Error) => error)
    assert.ok(viaQuery instanceof DatabaseError && viaQuery.code === '22012', String(viaQuery))
    const viaTx = await db.transaction((tx) => tx.query('SELECT 1/$1::int', [0])).catch((error: Error) => error)
    assert.ok(viaTx instanceof DatabaseError && viaTx.code === '22012', String(viaTx))
    // A server error leaves the connection usable: it is not thrown away.
    assert.equal((await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid)
  })
})
