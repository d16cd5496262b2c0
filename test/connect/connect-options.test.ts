// Option values are checked when the Database is built: a wrong type or value is an INVALID_OPTION
// error that names the option, what it must be and what it got, never a crash inside pg later.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { cleanEnv, freshDatabase, scratchDir, server, writePgpass } from '../helpers.ts'

/** Building a Database with `options` throws INVALID_OPTION whose message matches every pattern. */
function refused(options: Record<string, unknown>, ...patterns: RegExp[]): PgcrewError {
  let error: unknown
  assert.throws(
    () => new Database({ env: cleanEnv(), ...options } as never),
    (e: unknown) => {
      error = e
      return true
    },
  )
  assert.ok(error instanceof PgcrewError, `expected a PgcrewError, got ${String(error)}`)
  assert.equal(error.code, 'INVALID_OPTION', error.message)
  for (const p of patterns) assert.match(error.message, p)
  return error
}

describe('option values are checked at construction (no server needed)', () => {
  // Each of these used to be accepted and fail later: several crashed the whole process from a pg socket callback.
  const cases: Array<[name: string, options: Record<string, unknown>, ...patterns: RegExp[]]> = [
    ['user: 5 (crashed the process on connect)', { user: 5 }, /^user must be a string, not the number 5$/],
    ['dbname: 5 (crashed the process on connect)', { dbname: 5 }, /^dbname must be a string, not the number 5$/],
    ['applicationName: 7 (crashed the process on connect)', { applicationName: 7 }, /^applicationName must be a string, not the number 7$/],
    ['readonly: "false" (made sessions read-only)', { readonly: 'false' }, /^readonly must be true or false, not the string "false"$/],
    ['prePing: 1', { prePing: 1 }, /^prePing must be true or false, not the number 1$/],
    ['max: "5" (said "not 5")', { max: '5' }, /^max must be a whole number ≥ 1, not the string "5"$/],
    ['max: 1.5', { max: 1.5 }, /^max must be a whole number ≥ 1, not the number 1\.5$/],
    ['host: 5432 (startsWith is not a function)', { host: 5432 }, /^host must be a string, not the number 5432$/],
    ['onConnect: 5 (hook is not a function)', { onConnect: 5 }, /^onConnect must be a function, a module path, or an array of those, not the number 5$/],
    ['onConnect: [null]', { onConnect: [null] }, /^onConnect\[0\] must be a function or a module path, not null$/],
    ['onConnect: [fn, 7]', { onConnect: [() => {}, 7] }, /^onConnect\[1\] must be a function or a module path, not the number 7$/],
    ['searchPath: 5 (value.replace is not a function)', { searchPath: 5 }, /^searchPath must be a string, not the number 5$/],
    ['options: true', { options: true }, /^options must be a string, not the boolean true$/],
    ['port: 0', { port: 0 }, /^port must be a whole number from 1 to 65535, not the number 0$/],
    ['port: 65536', { port: 65536 }, /^port must be a whole number from 1 to 65535, not the number 65536$/],
    ['port: "5432"', { port: '5432' }, /^port must be a whole number from 1 to 65535, not the string "5432"$/],
    ['dbversion: "a b" (changeVersion refuses it)', { dbversion: 'a b' }, /^dbversion must be a string of letters, digits, _ \. and -, not the string "a b"$/],
    ['dbversion: 2', { dbversion: 2 }, /^dbversion must be .*, not the number 2$/],
    [
      'sslmode: "verify-ful" (was treated as verify-full)',
      { sslmode: 'verify-ful' },
      /^sslmode must be "disable", "allow", "prefer", "require", "verify-ca" or "verify-full", not the string "verify-ful" \(did you mean "verify-full"\?\)$/,
    ],
    ['sslmode: true', { sslmode: true }, /^sslmode must be .*, not the boolean true$/],
    ['pooling: "pool"', { pooling: 'pool' }, /^pooling must be "pooled" or "per-transaction", not the string "pool" \(did you mean "pooled"\?\)$/],
    ['statementTimeoutMillis: "100"', { statementTimeoutMillis: '100' }, /^statementTimeoutMillis must be a whole number from 0 to 2147483647, not the string "100"$/],
    ['closeTimeoutMillis: Infinity', { closeTimeoutMillis: Infinity }, /^closeTimeoutMillis must be a whole number .*, not the number Infinity$/],
    ['closeTimeoutMillis beyond what setTimeout honours', { closeTimeoutMillis: 3_000_000_000 }, /^closeTimeoutMillis must be a whole number from 0 to 2147483647, not the number 3000000000$/],
    ['idleTimeoutMillis: NaN', { idleTimeoutMillis: NaN }, /^idleTimeoutMillis must be a whole number .*, not the number NaN$/],
    ['connectionTimeoutMillis: -1', { connectionTimeoutMillis: -1 }, /^connectionTimeoutMillis must be a whole number from 0 to 2147483647, not the number -1$/],
    ['maxLifetimeSeconds beyond what setTimeout honours', { maxLifetimeSeconds: 10_000_000 }, /^maxLifetimeSeconds must be a whole number from 0 to 2147483, not the number 10000000$/],
    ['profile: ["a"]', { profile: ['a'] }, /^profile must be a string, not an array$/],
    ['profilesFile: {}', { profilesFile: {} }, /^profilesFile must be a string, not an object$/],
    ['admin: null', { admin: null }, /^admin must be a string, not null$/],
    ['pgpassFile: 1n', { pgpassFile: 1n }, /^pgpassFile must be a string, not the bigint 1n$/],
    ['onWarning: "log"', { onWarning: 'log' }, /^onWarning must be a function, not the string "log"$/],
    ['env: null', { env: null }, /^env must be an object of strings, like process\.env, not null$/],
    ['env: { PGPORT: 5432 }', { env: { PGPORT: 5432 } }, /^env\.PGPORT must be a string, not a number$/],
  ]
  for (const [name, options, ...patterns] of cases) {
    test(name, () => {
      const error = refused(options, ...patterns)
      const option = Object.keys(options)[0]!
      assert.equal(error.details.option, option)
    })
  }

  test('a wrong password or connection string is named by type only, never echoed', () => {
    const e1 = refused({ password: 918273645 }, /^password must be a string, not a number$/)
    assert.ok(!e1.message.includes('918273645'))
    const e2 = refused({ connectionString: new URL('postgres://u:Zq9secret@db.example/x') }, /^connectionString must be a string, not a URL object$/)
    assert.ok(!e2.message.includes('Zq9secret'))
    const e3 = refused({ env: { PGPASSWORD: 918273645 } }, /^env\.PGPASSWORD must be a string, not a number$/)
    assert.ok(!e3.message.includes('918273645'))
  })

  test('a long string value is shortened in the message', () => {
    const e = refused({ sslmode: 'x'.repeat(500) }, /not the string "x{80}…"/)
    assert.ok(e.message.length < 250)
  })

  test('unknown keys are still UNKNOWN_OPTION, checked before values', () => {
    assert.throws(() => new Database({ usr: 5, port: 0 } as never), { code: 'UNKNOWN_OPTION', message: /did you mean "user"/ })
  })

  test('undefined means "not set"; valid values and the limits themselves are accepted', () => {
    const hook = (): void => {}
    const ok = [
      { host: undefined, port: undefined, user: undefined, readonly: undefined, pooling: undefined, onConnect: undefined, env: cleanEnv() },
      { port: 1, max: 1, idleTimeoutMillis: 0, connectionTimeoutMillis: 0, maxLifetimeSeconds: 0, closeTimeoutMillis: 0, statementTimeoutMillis: 0 },
      { port: 65535, closeTimeoutMillis: 2_147_483_647, statementTimeoutMillis: 2_147_483_647, maxLifetimeSeconds: 2_147_483 },
      { readonly: false, prePing: true, pooling: 'per-transaction', dbversion: 'v1.2-3_x', sslmode: 'verify-ca' },
      { onConnect: hook },
      { onConnect: './test/fixtures/hooks/statement-timeout.ts' },
      { onConnect: [] },
      { onConnect: [hook, './test/fixtures/hooks/statement-timeout.ts'] },
      {
        host: '',
        dbname: 'd',
        user: 'u',
        password: 'p',
        admin: 'a',
        applicationName: 'app',
        options: '-c x=1',
        searchPath: 's',
        profile: 'p',
        profilesFile: 'f',
        pgpassFile: 'f',
        connectionString: 'postgres://h/d',
      },
      { onWarning: hook, env: { PGHOST: 'h', UNSET: undefined } },
    ]
    for (const options of ok) assert.doesNotThrow(() => new Database({ env: cleanEnv(), ...options } as never), JSON.stringify(options))
  })
})

describe('valid options still work against the real server', () => {
  test('options of every type, given explicitly, reach the session', async () => {
    const { host, port, user, password } = server()
    // freshDatabase names it <prefix>_<hex>: connect to it as dbname <prefix> with dbversion <hex>.
    const { dbname: full } = await freshDatabase('optval')
    const [base, version] = [full.slice(0, full.lastIndexOf('_')), full.slice(full.lastIndexOf('_') + 1)]
    const dir = scratchDir()
    const hookModule = join(dir, 'hook.mjs')
    writeFileSync(hookModule, "export default async (client) => { await client.query(\"SELECT set_config('pgcrew.module_hook', 'ran', false)\") }\n")
    const warnings: string[] = []
    await using db = new Database({
      host,
      port,
      dbname: base,
      dbversion: version,
      user,
      password,
      readonly: true,
      pooling: 'pooled',
      max: 2,
      prePing: true,
      idleTimeoutMillis: 5000,
      connectionTimeoutMillis: 10_000,
      maxLifetimeSeconds: 60,
      closeTimeoutMillis: 2000,
      applicationName: 'pgcrew options test',
      sslmode: 'prefer',
      options: '-c work_mem=8MB',
      searchPath: 'pg_catalog,public',
      statementTimeoutMillis: 4321,
      onConnect: [async (client) => void (await client.query("SELECT set_config('pgcrew.fn_hook', 'ran', false)")), hookModule],
      pgpassFile: writePgpass(dir, []),
      onWarning: (m) => warnings.push(m),
      env: cleanEnv(),
    })
    await db.connect()
    assert.equal(db.readOnly, true)
    assert.equal(db.dbname, full)
    const { rows } = await db.query(
      `SELECT current_database() AS db, current_setting('application_name') AS app, current_setting('work_mem') AS work_mem,
              current_setting('search_path') AS search_path, current_setting('statement_timeout') AS timeout,
              current_setting('default_transaction_read_only') AS ro,
              current_setting('pgcrew.fn_hook', true) AS fn_hook, current_setting('pgcrew.module_hook', true) AS module_hook`,
    )
    assert.deepEqual(rows[0], {
      db: full,
      app: 'pgcrew options test',
      work_mem: '8MB',
      search_path: 'pg_catalog,public',
      timeout: '4321ms',
      ro: 'on',
      fn_hook: 'ran',
      module_hook: 'ran',
    })
    assert.deepEqual(warnings, [])
  })

  test('string values from a profile file and PG* variables are parsed where they are read, not refused', async () => {
    const { host, port, user, password } = server()
    const { dbname } = await freshDatabase('optprof')
    const dir = scratchDir()
    const pgpassFile = writePgpass(dir, [`${host}:${port}:*:${user}:${password}`])
    // In the INI file every value is text: port, readonly and statement_timeout included.
    const profilesFile = join(dir, 'profiles.ini')
    writeFileSync(profilesFile, `[valid]\nhost = ${host}\nport = ${port}\ndbname = ${dbname}\nuser = ${user}\nreadonly = false\nstatement_timeout = 1500\nsslmode = disable\n`)
    {
      await using db = new Database({ profile: 'valid', profilesFile, pgpassFile, env: cleanEnv() })
      await db.connect()
      assert.equal(db.readOnly, false)
      const { rows } = await db.query("SELECT current_database() AS db, current_setting('statement_timeout') AS timeout")
      assert.deepEqual(rows[0], { db: dbname, timeout: '1500ms' })
    }
    // PGPORT is a string in the environment, as it always is.
    const empty = join(dir, 'none.ini')
    writeFileSync(empty, '')
    {
      await using db = new Database({ pgpassFile, env: cleanEnv({ PGCREW_PROFILES: empty, PGHOST: host, PGPORT: String(port), PGDATABASE: dbname, PGUSER: user }) })
      await db.connect()
      assert.equal((await db.query('SELECT current_database() AS db')).rows[0].db, dbname)
    }
  })
})

test('db.onConnect() refuses a value that is neither a function nor a module path at once, not at connect time', () => {
  const db = new Database({ host: 'localhost', env: {} })
  assert.throws(() => db.onConnect(5 as never), { code: 'INVALID_OPTION', message: 'onConnect takes a function or a module path, not the number 5' })
  assert.throws(() => db.onConnect('' as never), { code: 'INVALID_OPTION' })
})

test('an unknown sslmode from a connection string, a profile or PGSSLMODE is refused (libpq refuses it), naming where it came from', async () => {
  const { host, port } = server()
  const dir = scratchDir()
  const profilesFile = join(dir, 'profiles.ini')
  writeFileSync(profilesFile, `[typo]\nhost = ${host}\nport = ${port}\nsslmode = verify-ful\n`)
  const cases: Array<[Database, RegExp]> = [
    [
      new Database({ connectionString: `postgres://${host}:${port}/postgres?sslmode=requier`, env: cleanEnv() }),
      /sslmode "requier" \(from the options or connection string\) is not one of .* \(did you mean "require"\?\)/,
    ],
    [new Database({ profile: 'typo', profilesFile, env: cleanEnv() }), /sslmode "verify-ful" \(from profile "typo"\)/],
    [new Database({ host, port, env: cleanEnv({ PGSSLMODE: 'on' }) }), /sslmode "on" \(from PGSSLMODE\)/],
  ]
  for (const [db, message] of cases) {
    await assert.rejects(db.connect(), { code: 'INVALID_OPTION', message })
    await db.close()
  }
})

test('regression: PGPORT and PGCONNECT_TIMEOUT are read as psql reads them; PGPORT=abc is an error naming PGPORT, not a silent 5432', async () => {
  const { host, port, user } = server()
  const dbname = (await freshDatabase('envport')).dbname
  const pgpassFile = writePgpass(scratchDir(), [`*:*:*:*:${server().password}`])
  // psql: invalid integer value "abc" for connection option "port"; invalid port number: "0".
  const refusedEnv: Array<[Record<string, string>, RegExp]> = [
    [{ PGPORT: 'abc' }, /^PGPORT in the environment must be a whole number \(decimal digits only\), not "abc"; fix or unset it$/],
    [{ PGPORT: '0x1538' }, /^PGPORT in the environment must be a whole number/],
    [{ PGPORT: '5e3' }, /^PGPORT in the environment must be a whole number/],
    [{ PGPORT: '0' }, /^PGPORT in the environment must be from 1 to 65535, not "0"/],
    [{ PGPORT: '99999' }, /^PGPORT in the environment must be from 1 to 65535, not "99999"/],
    [{ PGPORT: String(port), PGCONNECT_TIMEOUT: '5e3' }, /^PGCONNECT_TIMEOUT in the environment must be a whole number \(decimal digits only\), not "5e3"/],
  ]
  for (const [vars, message] of refusedEnv) {
    await using db = new Database({ pgpassFile, env: cleanEnv({ PGHOST: host, PGUSER: user, PGDATABASE: dbname, ...vars }) })
    await assert.rejects(db.connect(), { code: 'INVALID_OPTION', message })
  }
  // What libpq accepts still connects: spaces around the digits; and an explicit port means
  // PGPORT is never read, as with psql -p.
  for (const options of [
    { env: cleanEnv({ PGHOST: host, PGUSER: user, PGDATABASE: dbname, PGPORT: ` ${port} `, PGCONNECT_TIMEOUT: '10 ' }) },
    { port, env: cleanEnv({ PGHOST: host, PGUSER: user, PGDATABASE: dbname, PGPORT: 'abc' }) },
  ]) {
    await using db = new Database({ pgpassFile, ...options })
    assert.equal((await db.query('SELECT current_database() AS db')).rows[0].db, dbname)
  }
})

test("one place renders a user's value into a message: cut to 80 characters, control characters escaped", () => {
  const e = refused({ sslmode: '\u001b[2J' + 'y'.repeat(100_000) }, /not the string "\\u001b\[2Jy{76}…"/)
  assert.ok(e.message.length < 250 && !/[\u0000-\u001f]/.test(e.message), e.message)
})
