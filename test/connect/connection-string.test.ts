// postgres:// URIs and py-postgresql pq:// IRIs, parsed and used for real; connection failures as
// typed errors; and no password anywhere a user could see it.
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { inspect } from 'node:util'
import { maskConnectionString, maskSecretsInText, parseConnectionString } from '../../src/connect/connection-string.ts'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { admin, cleanEnv, freshDatabase, freshRole, scratchDir, server, writePgpass } from '../helpers.ts'

function invalid(uri: string, ...mustNotShow: string[]): PgcrewError {
  let caught: unknown
  try {
    parseConnectionString(uri)
  } catch (error) {
    caught = error
  }
  assert.ok(caught instanceof PgcrewError, `expected INVALID_CONNECTION_STRING for ${uri}`)
  assert.equal(caught.code, 'INVALID_CONNECTION_STRING')
  const shown = [caught.message, inspect(caught, { depth: 8 }), JSON.stringify(caught)].join('\n')
  for (const secret of mustNotShow) assert.ok(!shown.includes(secret), `"${secret}" leaked: ${caught.message}`)
  return caught
}

describe('parsing postgres:// URIs', () => {
  it('reads user, password, host, port, database and libpq parameters', () => {
    const p = parseConnectionString('postgres://me:p%40ss%3Aw@db.example.org:5433/app?sslmode=require&application_name=etl&connect_timeout=7')
    assert.deepEqual(p.settings, { host: 'db.example.org', port: 5433, dbname: 'app', user: 'me', sslmode: 'require', applicationName: 'etl', connectTimeoutSeconds: 7 })
    assert.equal(p.password, 'p@ss:w')
    assert.ok(!inspect(p).includes('p@ss') && !JSON.stringify(p).includes('p@ss'))
  })

  it('accepts postgresql://, a socket directory as host, and ?dbname=', () => {
    assert.deepEqual(parseConnectionString('postgresql://me@%2Ftmp%2Fsock:5433/app').settings, { host: '/tmp/sock', port: 5433, dbname: 'app', user: 'me' })
    assert.equal(parseConnectionString('postgres://me@h/?dbname=other').settings.dbname, 'other')
  })

  it('refuses a query parameter it would otherwise drop silently', () => {
    const e = invalid('postgres://me:hunter2x@h/app?work_mem=64MB', 'hunter2x')
    assert.match(e.message, /unsupported parameter "work_mem"/)
    assert.match(e.message, /pq:\/\//)
  })

  it('treats ?ssl=true as sslmode=require', () => {
    assert.equal(parseConnectionString('postgres://h/app?ssl=true').settings.sslmode, 'require')
  })
})

describe('parsing pq:// IRIs', () => {
  it('reads pq://user:pass@host:port/db?setting=v&[driver_param]=v#schema1,schema2', () => {
    const p = parseConnectionString('pq://me:se%3Acret@db.example.org:5433/app?work_mem=64MB&[application_name]=etl&[connect_timeout]=5#analysis,public')
    assert.deepEqual(p.settings, { user: 'me', host: 'db.example.org', port: 5433, dbname: 'app', applicationName: 'etl', connectTimeoutSeconds: 5, searchPath: 'analysis,public' })
    assert.deepEqual(p.serverSettings, { work_mem: '64MB' })
    assert.equal(p.password, 'se:cret')
    assert.ok(!inspect(p).includes('se:cret'))
  })

  it("reads IPv6 hosts and py-postgresql's [unix:...] socket paths", () => {
    assert.equal(parseConnectionString('pq://[::1]:5432/db').settings.host, '::1')
    assert.deepEqual(parseConnectionString('pq://me@[unix::tmp:.s.PGSQL.5433]/db').settings, { user: 'me', host: '/tmp', port: 5433, dbname: 'db' })
    assert.equal(parseConnectionString('pq://me@[unix::var:run:postgresql]/db').settings.host, '/var/run/postgresql')
  })

  it('keeps + in a setting (timezone=Etc/GMT+5 is not a form-encoded space)', () => {
    assert.deepEqual(parseConnectionString('pq://h/db?timezone=Etc/GMT%2B5&x=a+b').serverSettings, { timezone: 'Etc/GMT+5', x: 'a+b' })
  })

  it('splits the fragment before decoding and quotes names that need it', () => {
    assert.equal(parseConnectionString('pq://h/db#My%20Schema,a%2Cb,public').settings.searchPath, '"My Schema","a,b",public')
  })

  it('takes the password up to the last @ of the authority', () => {
    const p = parseConnectionString('pq://me:p@ss@db.example.org/app')
    assert.equal(p.settings.host, 'db.example.org')
    assert.equal(p.password, 'p@ss')
  })
})

describe("parsing libpq's key/value strings", () => {
  it('reads bare and quoted values, with backslash escapes, as psql does', () => {
    const parsed = parseConnectionString("service=obs user='ann o\\'neil' dbname=db\\ b  port = 5433 password='se cret'")
    assert.deepEqual(parsed.settings, { service: 'obs', user: "ann o'neil", dbname: 'db b', port: 5433 })
    assert.equal(parsed.password, 'se cret')
    assert.ok(!JSON.stringify(parsed).includes('se cret') && !inspect(parsed).includes('se cret'))
  })

  it('takes what follows "= " as the value, as libpq does: "dbname= user=bob" is the database "user=bob"', () => {
    // psql "host=h dbname= user=bob" connects as the OS user to the database "user=bob".
    assert.deepEqual(parseConnectionString('host=h dbname= user=bob').settings, { host: 'h', dbname: 'user=bob' })
  })

  it('names a service in a URI too: ?service= in postgres://, [service]= in pq://', () => {
    assert.deepEqual(parseConnectionString('postgresql:///app?service=obs').settings, { dbname: 'app', service: 'obs' })
    assert.deepEqual(parseConnectionString('pq:///app?[service]=obs').settings, { dbname: 'app', service: 'obs' })
  })

  it("refuses what psql refuses, in psql's words, never showing the password", () => {
    assert.match(invalid('host=h password=Zq9secret user', 'Zq9secret').message, /missing "=" after "user" in connection info string/)
    assert.match(invalid("host='h password=Zq9secret", 'Zq9secret').message, /unterminated quoted string in connection info string/)
    assert.match(invalid('password=Zq9secret schema=x', 'Zq9secret').message, /invalid connection option "schema"/)
    assert.match(invalid('password=Zq9secret sslcert=/x', 'Zq9secret').message, /libpq's "sslcert" is not supported by pgcrew/)
    assert.match(invalid('password=Zq9secret port=54x', 'Zq9secret').message, /port must be a whole number/)
  })
})

describe('bad connection strings', () => {
  it('name the problem and mask the password', () => {
    assert.match(invalid('mysql://me:Zq9secret@h/db', 'Zq9secret').message, /must start with postgres:\/\/, postgresql:\/\/ or pq:\/\//)
    assert.match(invalid('pq://h:abc/db').message, /the port must be a whole number \(decimal digits only\), not "abc"/)
    assert.match(invalid('pq://h/db?[bogus]=1').message, /unknown driver parameter \[bogus\]/)
    assert.match(invalid('pq://h/db?[port]=x').message, /the \[port\] parameter must be a whole number/)
    assert.match(invalid('pq://me:Zq9%zz@h/db', 'Zq9').message, /malformed percent-encoding/)
    assert.match(invalid('postgres://me:Zq9secret@h:notaport/db', 'Zq9secret').message, /invalid connection string postgres:\/\/me:\*\*\*@/)
  })

  it('never echo a piece of a password that holds an unencoded /', () => {
    // The '/' ends the authority, so "Zq9" reads as a port and "Xy7@h" as a path.
    assert.match(invalid('pq://me:Zq9/Xy7@h/db', 'Zq9', 'Xy7').message, /percent-encode/)
    invalid('postgres://me:Zq9/Xy7@h/db', 'Zq9', 'Xy7')
  })

  it('mask through the last @', () => {
    assert.equal(maskConnectionString('postgres://u:p@ss/w@host/db'), 'postgres://u:***@host/db')
    assert.equal(maskConnectionString('pq://u:pw@host/db#s'), 'pq://u:***@host/db#s')
    assert.equal(maskConnectionString('postgres://host:5432/db'), 'postgres://host:5432/db')
  })

  it('regression: refuse a port out of range (:0 and :99999 reached the network, or Node\'s "Invalid URL")', () => {
    // psql: invalid port number: "0"; invalid integer value "0x10" for connection option "port".
    const cases: Array<[string, RegExp]> = [
      ['postgres://h:0/db', /: the port must be from 1 to 65535, not "0"$/],
      ['postgres://me@h:99999/db', /: the port must be from 1 to 65535, not "99999"$/],
      ['postgres://h:0x10/db', /: the port must be a whole number \(decimal digits only\), not "0x10"$/],
      ['postgres://h/db?port=65536', /: the port must be from 1 to 65535, not "65536"$/],
      ['postgres://h/db?connect_timeout=5e3', /: connect_timeout must be a whole number \(decimal digits only\), not "5e3"$/],
      ['pq://h:0/db', /: the port must be from 1 to 65535, not "0"$/],
      ['pq://me@h:99999/db', /: the port must be from 1 to 65535, not "99999"$/],
      ['pq://h/db?[port]=0', /: the \[port\] parameter must be from 1 to 65535, not "0"$/],
      ['pq://h/db?[statement_timeout]=1e3', /: \[statement_timeout\] must be a whole number/],
      ['pq://[unix::tmp:.s.PGSQL.70000]/db', /: the socket file's port must be from 1 to 65535, not "70000"$/],
    ]
    for (const [uri, message] of cases) assert.match(invalid(uri).message, message, uri)
    // A password cut short by an unencoded '/' leaves a "port" that is a piece of it: never shown.
    assert.doesNotMatch(invalid('postgres://me:99123/x@h/db', '99123').message, /99123/)
    // What libpq accepts stays accepted: surrounding spaces (strtol) and an empty port (the default).
    assert.equal(parseConnectionString('postgres://h/db?port=%205433').settings.port, 5433)
    assert.equal(parseConnectionString('postgres://h:/db').settings.port, undefined)
  })

  it('regression: refuse bad percent-encoding in a postgres:// URL as in a pq:// IRI, never taking it as the password', () => {
    // psql: invalid percent-encoded token: "%ZZpw" — pgcrew does not echo the token, which is often the password.
    for (const uri of ['postgres://me:%ZZpw-Zq9@h/db', 'postgresql://me:Zq9pw%@h/db', 'pq://me:%ZZpw-Zq9@h/db']) {
      assert.match(invalid(uri, 'ZZpw', 'Zq9').message, /malformed percent-encoding: a % must be followed by two hex digits/, uri)
    }
    assert.match(invalid('postgres://me:Zq9%00pw@h/db', 'Zq9').message, /%00/)
    assert.match(invalid('pq://me:Zq9%FFpw@h/db', 'Zq9').message, /not UTF-8/)
  })

  it('regression: refuse an unterminated [bracket] in an IRI (it became a server setting named "[port")', () => {
    assert.match(invalid('pq://h/db?[port=5433').message, /parameter "\[port" has an unmatched bracket; driver parameters are written \[name\]=value/)
    assert.match(invalid('pq://h/db?work_mem]=64MB').message, /unmatched bracket/)
    assert.match(invalid('pq://[::1/db').message, /opens a \[ that is never closed/)
    assert.match(invalid('pq://h/db?=64MB').message, /has no name/)
  })

  it('regression: pq://h/db/extra is database "db", as in py-postgresql\'s IRI tests (it was "db/extra")', () => {
    assert.deepEqual(parseConnectionString('pq://me@h/db/extra/more').settings, { user: 'me', host: 'h', dbname: 'db' })
    // The path is split before decoding: an encoded slash stays inside the name.
    assert.equal(parseConnectionString('pq://h/my%2Fdb/extra').settings.dbname, 'my/db')
    assert.equal(parseConnectionString('pq://h//extra').settings.dbname, undefined)
  })

  it('regression: masking keeps the scheme and a user without a password (pq://alice@h printed as pq:***@h)', () => {
    const kept = ['pq://alice@h:5432/db', 'postgres://alice@h:5432/db', 'postgresql://h:5432/db', 'host=h user=alice dbname=db']
    for (const uri of kept) assert.equal(maskConnectionString(uri), uri)
    const masked: Array<[string, string]> = [
      ['pq://alice:Zq9secret@h/db', 'pq://alice:***@h/db'],
      ['postgres://alice:Zq9secret@h:5432/db?sslmode=require', 'postgres://alice:***@h:5432/db?sslmode=require'],
      ['postgresql://:Zq9secret@h/db', 'postgresql://:***@h/db'],
      ['postgres://alice:Zq9@se/cret@h/db', 'postgres://alice:***@h/db'],
      ['postgres://alice@h/db?password=Zq9secret&sslmode=require', 'postgres://alice@h/db?password=***&sslmode=require'],
      ['host=h user=alice password=Zq9secret dbname=db', 'host=h user=alice password=*** dbname=db'],
      ["host=h password='Zq9 se cret' user=alice", 'host=h password=*** user=alice'],
      ['host=h password = Zq9secret', 'host=h password = ***'],
    ]
    for (const [uri, shown] of masked) {
      assert.equal(maskConnectionString(uri), shown)
      assert.ok(!maskSecretsInText(`failed: ${uri} (retry)`).includes('Zq9'), maskSecretsInText(uri))
    }
  })
})

/** A TCP port on 127.0.0.1 with nothing listening. */
async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

describe('connection strings and failures on a real server', () => {
  let role: { name: string; password: string }
  let dbname: string
  let host: string
  let port: number
  before(async () => {
    role = await freshRole('iri')
    dbname = (await freshDatabase('iri')).dbname
    ;({ host, port } = server())
    await admin(`CREATE SCHEMA s1 AUTHORIZATION "${role.name}"`, [], dbname)
  })

  const iri = () => `pq://${role.name}:${encodeURIComponent(role.password)}@${host}:${port}/${dbname}?work_mem=64MB&[application_name]=x#s1,public`

  async function sessionFacts(db: Database) {
    const { rows } = await db.query<{ work_mem: string; app: string; schemas: string[]; path: string; u: string }>(
      "select current_setting('work_mem') as work_mem, current_setting('application_name') as app, current_schemas(false)::text[] as schemas, current_setting('search_path') as path, current_user as u",
    )
    return rows[0]!
  }

  it("applies a pq:// IRI's settings, driver parameters and search_path on the server", async () => {
    const db = new Database({ connectionString: iri(), env: cleanEnv() })
    try {
      await db.connect()
      const facts = await sessionFacts(db)
      assert.equal(facts.work_mem, '64MB')
      assert.equal(facts.app, 'x')
      assert.deepEqual(facts.schemas, ['s1', 'public'])
      assert.equal(facts.path, 's1,public')
      assert.equal(facts.u, role.name)
      assertNoPassword(db, role.password)
    } finally {
      await db.close()
    }
  })

  it('does the same through connectFromParameters, on every pooled connection', async () => {
    const db = new Database({ env: cleanEnv(), pgpassFile: writePgpass(scratchDir(), []) })
    try {
      assert.equal(await db.connectFromParameters(iri()), true)
      const facts = await Promise.all([1, 2, 3].map(() => db.transaction(async (tx) => (await tx.query("select current_setting('work_mem') as w, pg_sleep(0.05)")).rows[0].w)))
      assert.deepEqual(facts, ['64MB', '64MB', '64MB'])
      assertNoPassword(db, role.password)
    } finally {
      await db.close()
    }
  })

  it('connects with a postgres:// URI', async () => {
    const db = new Database({ connectionString: `postgres://${role.name}:${encodeURIComponent(role.password)}@${host}:${port}/${dbname}?application_name=uri`, env: cleanEnv() })
    try {
      await db.connect()
      assert.equal((await sessionFacts(db)).app, 'uri')
      assertNoPassword(db, role.password)
    } finally {
      await db.close()
    }
  })

  it('refuses an unknown option key with UNKNOWN_OPTION, suggesting the right one', () => {
    assert.throws(
      () => new Database({ bogus: 1 } as never),
      (e: unknown) => e instanceof PgcrewError && e.code === 'UNKNOWN_OPTION' && /"bogus"/.test(e.message),
    )
    assert.throws(
      () => new Database({ Password: 'Zq9secret' } as never),
      (e: unknown) => e instanceof PgcrewError && e.code === 'UNKNOWN_OPTION' && /did you mean "password"/.test(e.message) && !e.message.includes('Zq9secret'),
    )
  })

  it('reports a closed port as CONNECTION_REFUSED, or false with silentOnFail', async () => {
    const closed = await closedPort()
    const uri = `pq://${role.name}:${encodeURIComponent(role.password)}@127.0.0.1:${closed}/${dbname}`
    const db = new Database({ connectionString: uri, env: cleanEnv() })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'CONNECTION_REFUSED')
      assert.ok(e.message.includes(`127.0.0.1:${closed}`))
      assertNoSecretIn(e, role.password)
      assert.equal(await db.connect({ silentOnFail: true }), false)
      assert.equal(db.connected, false)
      assertNoPassword(db, role.password)
    } finally {
      await db.close()
    }
  })

  it('regression: an unknown host says to check the host name, not "is the server running"', async () => {
    // .invalid never resolves (RFC 2606); a resolver that does not answer gives EAI_AGAIN, worded alike.
    const db = new Database({ connectionString: `pq://${role.name}:${encodeURIComponent(role.password)}@no-such-host.invalid:${port}/${dbname}`, env: cleanEnv() })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'CONNECTION_REFUSED')
      assert.match(e.message, /: (unknown host "no-such-host\.invalid"; check the host name|the host name "no-such-host\.invalid" could not be resolved .*; check the host name and your network)$/)
      assert.doesNotMatch(e.message, /is the server running/)
      assertNoSecretIn(e, role.password)
    } finally {
      await db.close()
    }
  })

  it('reports a missing database as DATABASE_NOT_FOUND', async () => {
    const db = new Database({ connectionString: `postgres://${role.name}:${encodeURIComponent(role.password)}@${host}:${port}/no_such_db_here`, env: cleanEnv() })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'DATABASE_NOT_FOUND')
      assert.match(e.message, /"no_such_db_here" does not exist/)
      assertNoSecretIn(e, role.password)
      assert.equal(await db.connect({ silentOnFail: true }), false)
    } finally {
      await db.close()
    }
  })

  it('reports a wrong password as AUTHENTICATION_FAILED without showing either password', async () => {
    const wrong = 'Zq9-wrong-' + role.password
    const db = new Database({ connectionString: `pq://${role.name}:${encodeURIComponent(wrong)}@${host}:${port}/${dbname}`, env: cleanEnv() })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'AUTHENTICATION_FAILED')
      assert.ok(e.message.includes(`"${role.name}"`))
      assertNoSecretIn(e, wrong, role.password)
      assertNoPassword(db, wrong)
      assert.equal(await db.connect({ silentOnFail: true }), false)
    } finally {
      await db.close()
    }
  })

  it('regression: a postgres:// URL with bad percent-encoding is refused, not used to log in with the undecoded text', async () => {
    // The role's password is literally "%ZZ…": before, pg-connection-string re-encoded the stray %
    // and this connected, where psql refuses the string.
    const literal = '%ZZ' + role.password
    const odd = await freshRole('pct')
    await admin(`ALTER ROLE "${odd.name}" PASSWORD '${literal}'`)
    const db = new Database({ connectionString: `postgres://${odd.name}:${literal}@${host}:${port}/${dbname}`, env: cleanEnv(), pgpassFile: writePgpass(scratchDir(), []) })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'INVALID_CONNECTION_STRING')
      assert.match(e.message, /malformed percent-encoding/)
      assertNoSecretIn(e, literal, role.password)
      assert.equal(db.connected, false)
    } finally {
      await db.close()
    }
  })

  it('rejects a bad string at connect with INVALID_CONNECTION_STRING and a masked message', async () => {
    const db = new Database({ connectionString: 'pq://me:Zq9/Xy7@h/db', env: cleanEnv() })
    try {
      const e = await failure(db.connect())
      assert.equal(e.code, 'INVALID_CONNECTION_STRING')
      assertNoSecretIn(e, 'Zq9', 'Xy7')
      for (const shown of [inspect(db), String(db), JSON.stringify(db)]) assert.ok(!shown.includes('Zq9'), shown)
    } finally {
      await db.close()
    }
  })
})

async function failure(p: Promise<unknown>): Promise<PgcrewError> {
  try {
    await p
  } catch (error) {
    assert.ok(error instanceof PgcrewError, `expected a PgcrewError, got ${inspect(error)}`)
    return error
  }
  assert.fail('expected a failure')
}

function assertNoSecretIn(error: unknown, ...secrets: string[]): void {
  const shown = [String(error), (error as Error).stack ?? '', inspect(error, { depth: 10 }), JSON.stringify(error)].join('\n')
  for (const s of secrets) assert.ok(!shown.includes(s), `a password leaked into ${String(error)}`)
}

/** The password must not show in anything a user prints about the Database. */
function assertNoPassword(db: Database, password: string): void {
  const views = {
    inspect: inspect(db, { depth: 10, showHidden: false }),
    String: String(db),
    JSON: JSON.stringify(db),
    snapshot: JSON.stringify(db.snapshot()),
    inspectSnapshot: inspect(db.snapshot(), { depth: 10 }),
    connectionParams: JSON.stringify(db.connectionParams ?? null) + inspect(db.connectionParams),
  }
  for (const [where, text] of Object.entries(views)) assert.ok(!text.includes(password), `the password shows in ${where}: ${text}`)
}
