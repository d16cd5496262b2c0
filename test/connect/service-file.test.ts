// libpq's connection service file, with psql as the judge: for each case, psql and pgcrew get the same
// service files, environment and connection string, and must reach the same role, database and port
// over the same transport, or fail for the same reason.
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { inspect } from 'node:util'
import { findPostgresBinaries } from '../../src/cluster/postgres-binaries.ts'
import { Database } from '../../src/database/database.ts'
import { admin, freshDatabase, freshRole, scratchDir, server, writePgpass } from '../helpers.ts'

const QUERY = "select current_user, current_database(), current_setting('port'), case when inet_server_addr() is null then 'socket' else 'tcp' end"

/** psql from the PostgreSQL the suite uses, else from PATH. It is the reference here, so none is a failure. */
function findPsql(): string {
  const candidates: string[] = []
  try {
    candidates.push(join(findPostgresBinaries('system').bindir, 'psql'))
  } catch {
    // no system server binaries: PATH may still have a client
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(join(dir, 'psql'))
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {
      // next
    }
  }
  throw new Error(
    'psql was not found (not beside the system PostgreSQL binaries, not on PATH): this table compares pgcrew with psql on the same service files, ' +
      'so it cannot run without it; install the PostgreSQL client (Debian: postgresql-client)',
  )
}

/** What a connection attempt came to: `user|db|port|transport`, or the error text. */
type Outcome = { ok: string } | { error: string }

function runPsql(psql: string, conn: string | undefined, env: NodeJS.ProcessEnv): Promise<Outcome> {
  // -w: never prompt for a password (a wrong password must fail, not hang); -X: no ~/.psqlrc.
  const args = ['-X', '-w', '-A', '-t', '-c', QUERY, ...(conn === undefined ? [] : [conn])]
  return new Promise((resolve) => {
    execFile(psql, args, { env, timeout: 30_000, encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve(error ? { error: stderr.trim() || String(error) } : { ok: stdout.trim() })
    })
  })
}

async function runPgcrew(conn: string | undefined, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const db = new Database({ connectionString: conn, env, connectionTimeoutMillis: 30_000 })
  try {
    await db.connect()
    const { rows } = await db.query<Record<string, string>>(QUERY)
    return { ok: Object.values(rows[0]!).join('|') }
  } catch (error) {
    return { error: (error as Error).message }
  } finally {
    await db.close()
  }
}

interface Case {
  name: string
  /** ~/.pg_service.conf (or the file PGSERVICEFILE names, when the case sets it to `alt`). */
  user?: string
  /** PGSYSCONFDIR/pg_service.conf. */
  system?: string
  /** A second file, at $ALT (for PGSERVICEFILE). */
  alt?: string
  env?: Record<string, string>
  conn?: string
  /** `user|db|port|transport` both must reach … */
  reach?: string
  /** … or what each error must say. */
  fails?: { psql: RegExp; pgcrew: RegExp }
}

/** The servers' facts the cases are written with, known once the roles and databases exist. */
interface Facts {
  a: { name: string; password: string }
  b: { name: string; password: string }
  dbA: string
  dbB: string
  host: string
  port: number
  socket: string
  /** A service body (host, port, user, dbname) for a / dbA and b / dbB. */
  svcA: string
  svcB: string
  /** What reaching a / dbA (b / dbB) over TCP looks like. */
  A: string
  B: string
  noPgpass: string
}

/** The table: each case is psql's word against pgcrew's. */
const CASES: ReadonlyArray<(x: Facts) => Case> = [
  (x) => ({ name: 'service= in a key/value string', user: `[a]\n${x.svcA}`, conn: 'service=a', reach: x.A }),
  (x) => ({ name: 'PGSERVICE', user: `[a]\n${x.svcA}`, env: { PGSERVICE: 'a' }, reach: x.A }),
  (x) => ({ name: '?service= in a URI', user: `[a]\n${x.svcA}`, conn: 'postgresql:///?service=a', reach: x.A }),
  (x) => ({ name: "the URI's database over the service's", user: `[a]\n${x.svcA}`, conn: `postgresql:///${x.dbB}?service=a`, reach: `${x.a.name}|${x.dbB}|${x.port}|tcp` }),
  (x) => ({ name: "the string's user over the service's", user: `[a]\n${x.svcA}`, conn: `service=a user=${x.b.name}`, reach: `${x.b.name}|${x.dbA}|${x.port}|tcp` }),
  (x) => ({ name: 'quoted values in a key/value string', user: `[a]\n${x.svcA}`, conn: `service = 'a'  dbname='${x.dbB}'`, reach: `${x.a.name}|${x.dbB}|${x.port}|tcp` }),
  (x) => ({ name: 'service= in the string over PGSERVICE', user: `[a]\n${x.svcA}[b]\n${x.svcB}`, env: { PGSERVICE: 'a' }, conn: 'service=b', reach: x.B }),
  (x) => ({ name: 'the service over PGUSER, PGDATABASE and PGPORT', user: `[a]\n${x.svcA}`, env: { PGSERVICE: 'a', PGUSER: x.b.name, PGDATABASE: x.dbB, PGPORT: '1' }, reach: x.A }),
  (x) => ({
    name: 'PG* variables fill what the service leaves out',
    user: `[a]\nuser=${x.a.name}\n`,
    env: { PGSERVICE: 'a', PGHOST: x.host, PGPORT: String(x.port), PGDATABASE: x.dbB },
    reach: `${x.a.name}|${x.dbB}|${x.port}|tcp`,
  }),
  (x) => ({
    name: 'an empty value is the default, and hides the PG* variable',
    user: `[a]\nhost=${x.host}\nport=${x.port}\nuser=${x.a.name}\ndbname=\n`,
    env: { PGSERVICE: 'a', PGDATABASE: x.dbB },
    fails: { psql: new RegExp(`database "${x.a.name}" does not exist`), pgcrew: new RegExp(`database "${x.a.name}" does not exist`) },
  }),
  (x) => ({
    name: 'a host that is a socket directory',
    user: `[s]\nhost=${x.socket}\nport=${x.port}\nuser=${x.a.name}\ndbname=${x.dbA}\n`,
    conn: 'service=s',
    reach: `${x.a.name}|${x.dbA}|${x.port}|socket`,
  }),
  (x) => ({ name: 'only in the system file', system: `[b]\n${x.svcB}`, conn: 'service=b', reach: x.B }),
  (x) => ({
    name: 'found in the user file, the system file is not read at all',
    user: `[a]\nhost=${x.host}\nport=${x.port}\nuser=${x.a.name}\n`,
    system: `[a]\n${x.svcB}`,
    env: { PGDATABASE: x.dbA },
    conn: 'service=a',
    reach: x.A,
  }),
  (x) => ({ name: 'PGSERVICEFILE replaces ~/.pg_service.conf', user: `[a]\n${x.svcA}`, alt: `[a]\n${x.svcB}`, env: { PGSERVICEFILE: '$ALT' }, conn: 'service=a', reach: x.B }),
  (x) => ({
    name: 'PGSERVICEFILE naming no file',
    system: `[a]\n${x.svcA}`,
    env: { PGSERVICEFILE: '$DIR/none.conf' },
    conn: 'service=a',
    fails: { psql: /service file ".*none\.conf" not found/, pgcrew: /service file ".*none\.conf" not found/ },
  }),
  (x) => ({
    name: 'a service in no file',
    user: `[a]\n${x.svcA}`,
    system: `[b]\n${x.svcB}`,
    conn: 'service=zz',
    fails: { psql: /definition of service "zz" not found/, pgcrew: /definition of service "zz" not found.*looked in .*\.pg_service\.conf, .*pg_service\.conf/ },
  }),
  (x) => ({
    name: 'service names are case-sensitive',
    user: `[A]\n${x.svcA}`,
    env: { PGSERVICE: 'a' },
    fails: { psql: /definition of service "a" not found/, pgcrew: /definition of service "a" not found/ },
  }),
  (x) => ({
    name: 'an empty PGSERVICE is looked up, and fails',
    user: `[a]\n${x.svcA}`,
    env: { PGSERVICE: '' },
    fails: { psql: /definition of service "" not found/, pgcrew: /definition of service "" not found/ },
  }),
  (x) => ({
    name: 'indented # comments, a header with text after it, CRLF line ends, junk outside the section',
    user: `junk before any section\n[other]\nnot a key value line\n[a] the analysis server\r\n  # a comment\r\n${x.svcA.replaceAll('\n', '\r\n')}`,
    conn: 'service=a',
    reach: x.A,
  }),
  (x) => ({ name: 'the first of two values of a key wins', user: `[a]\n${x.svcA}user=${x.b.name}\n`, conn: 'service=a', reach: x.A }),
  (x) => ({ name: 'the first of two sections of a name wins', user: `[a]\n${x.svcA}[a]\n${x.svcB}`, conn: 'service=a', reach: x.A }),
  (x) => ({
    name: 'spaces around "=" are part of the key',
    user: `[a]\nhost = ${x.host}\n${x.svcA}`,
    conn: 'service=a',
    fails: { psql: /syntax error in service file ".*", line 2/, pgcrew: /syntax error in service file ".*", line 2: .*write host=value/ },
  }),
  (x) => ({
    name: '";" starts no comment',
    user: `[a]\n${x.svcA}; note\n`,
    conn: 'service=a',
    fails: { psql: /syntax error in service file ".*", line 6/, pgcrew: /syntax error in service file ".*", line 6/ },
  }),
  (x) => ({
    name: 'a key libpq does not know',
    user: `[a]\n${x.svcA}schema=x\n`,
    conn: 'service=a',
    fails: { psql: /syntax error in service file ".*", line 6/, pgcrew: /syntax error in service file ".*", line 6: invalid connection option "schema"/ },
  }),
  (x) => ({
    name: 'a nested service',
    user: `[a]\nservice=b\n[b]\n${x.svcB}`,
    conn: 'service=a',
    fails: { psql: /nested service specifications not supported in service file ".*", line 2/, pgcrew: /nested service specifications not supported in service file ".*", line 2/ },
  }),
  (x) => ({
    name: 'a port that is not a number',
    user: `[a]\n${x.svcA.replace(`port=${x.port}`, 'port=54x')}`,
    conn: 'service=a',
    fails: { psql: /invalid integer value "54x" for connection option "port"/, pgcrew: /line 3: port must be a whole number .*"54x"/ },
  }),
  (x) => ({
    name: "the service's password over PGPASSWORD",
    user: `[a]\n${x.svcA}password=${x.a.password}\n`,
    env: { PGPASSFILE: x.noPgpass, PGPASSWORD: 'wrong' },
    conn: 'service=a',
    reach: x.A,
  }),
  (x) => ({
    name: 'an unknown key in a key/value string',
    user: `[a]\n${x.svcA}`,
    conn: 'service=a schema=x',
    fails: { psql: /invalid connection option "schema"/, pgcrew: /invalid connection option "schema"/ },
  }),
  (x) => ({ name: 'a key/value string without "="', user: `[a]\n${x.svcA}`, conn: 'service=a user', fails: { psql: /missing "=" after "user"/, pgcrew: /missing "=" after "user"/ } }),
]

/** Stand-in facts, to read each case's name before the server is set up. */
const NAMES: Facts = { a: { name: 'a', password: '' }, b: { name: 'b', password: '' }, dbA: '', dbB: '', host: '', port: 1, socket: '', svcA: '', svcB: '', A: '', B: '', noPgpass: '' }

describe('service files: psql and pgcrew agree on where a service goes', () => {
  let psql: string
  let facts: Facts
  let pgpass: string
  let dir: string
  let n = 0

  before(async () => {
    psql = findPsql()
    const a = await freshRole('svc_a')
    const b = await freshRole('svc_b')
    const dbA = (await freshDatabase('svc_dba')).dbname
    const dbB = (await freshDatabase('svc_dbb')).dbname
    const { host, port } = server()
    const [{ dirs }] = await admin<{ dirs: string }>("select current_setting('unix_socket_directories') as dirs")
    dir = scratchDir()
    pgpass = writePgpass(dir, [`*:*:*:${a.name}:${a.password}`, `*:*:*:${b.name}:${b.password}`])
    facts = {
      a,
      b,
      dbA,
      dbB,
      host,
      port,
      socket: dirs!.split(',')[0]!.trim(),
      svcA: `host=${host}\nport=${port}\nuser=${a.name}\ndbname=${dbA}\n`,
      svcB: `host=${host}\nport=${port}\nuser=${b.name}\ndbname=${dbB}\n`,
      A: `${a.name}|${dbA}|${port}|tcp`,
      B: `${b.name}|${dbB}|${port}|tcp`,
      noPgpass: writePgpass(dir, []),
    }
  })

  /** A fresh home and system directory with the case's files; the environment both programs get. */
  function setUp(c: Case): NodeJS.ProcessEnv {
    const root = join(dir, `case-${++n}`)
    const home = join(root, 'home')
    const sys = join(root, 'etc')
    mkdirSync(home, { recursive: true })
    mkdirSync(sys, { recursive: true })
    if (c.user !== undefined) writeFileSync(join(home, '.pg_service.conf'), c.user)
    if (c.system !== undefined) writeFileSync(join(sys, 'pg_service.conf'), c.system)
    const alt = join(root, 'alt.conf')
    if (c.alt !== undefined) writeFileSync(alt, c.alt)
    // No profiles, and none of the machine's own service files: only what the case writes.
    const profiles = join(root, 'profiles.ini')
    writeFileSync(profiles, '')
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, LANG: 'C', PGSYSCONFDIR: sys, PGCREW_PROFILES: profiles, PGPASSFILE: pgpass }
    for (const [k, v] of Object.entries(c.env ?? {})) env[k] = v.replace('$ALT', alt).replace('$DIR', root)
    return env
  }

  for (const make of CASES) {
    it(make(NAMES).name, async () => {
      const c = make(facts)
      const env = setUp(c)
      const byPsql = await runPsql(psql, c.conn, env)
      const byPgcrew = await runPgcrew(c.conn, env)
      if (c.reach !== undefined) {
        assert.deepEqual(byPsql, { ok: c.reach }, 'psql')
        assert.deepEqual(byPgcrew, { ok: c.reach }, 'pgcrew')
      } else {
        assert.ok('error' in byPsql, `psql connected: ${JSON.stringify(byPsql)}`)
        assert.match(byPsql.error, c.fails!.psql)
        assert.ok('error' in byPgcrew, `pgcrew connected: ${JSON.stringify(byPgcrew)}`)
        assert.match(byPgcrew.error, c.fails!.pgcrew)
      }
    })
  }
})

describe('a profile that names a service, with pgcrew keys on top', () => {
  let env: NodeJS.ProcessEnv
  let profilesFile: string
  let a: { name: string; password: string }
  let b: { name: string; password: string }
  let dbA: string
  let dbB: string

  before(async () => {
    a = await freshRole('svcp_a')
    b = await freshRole('svcp_b')
    dbA = (await freshDatabase('svcp_dba')).dbname
    dbB = (await freshDatabase('svcp_dbb')).dbname
    const { host, port } = server()
    const dir = scratchDir()
    mkdirSync(join(dir, 'etc'))
    writeFileSync(join(dir, '.pg_service.conf'), `[obs]\nhost=${host}\nport=${port}\nuser=${a.name}\ndbname=${dbA}\npassword=${a.password}\n`)
    profilesFile = join(dir, 'profiles.ini')
    writeFileSync(
      profilesFile,
      [`[analysis]`, `service = obs`, `admin = ${b.name}`, `pooling = per-transaction`, `[other_db]`, `service = obs`, `dbname = ${dbB}`, `readonly = false`, `[typo]`, `service = osb`].join('\n'),
    )
    env = { PATH: process.env.PATH, HOME: dir, PGSYSCONFDIR: join(dir, 'etc'), PGPASSFILE: writePgpass(dir, [`*:*:*:${b.name}:${b.password}`]) }
  })

  async function session(db: Database): Promise<string> {
    const { rows } = await db.query<Record<string, string>>("select current_user, current_database(), current_setting('transaction_read_only')")
    return Object.values(rows[0]!).join('|')
  }

  it("connects where the service says, as its user with read-only sessions, and becomeAdmin() goes to the profile's admin", async () => {
    await using db = new Database({ profile: 'analysis', profilesFile, env })
    await db.connect()
    assert.equal(await session(db), `${a.name}|${dbA}|on`)
    assert.equal(db.pooling, 'per-transaction')
    assert.equal(db.connectionParams?.service, 'obs')
    await db.becomeAdmin()
    assert.equal(await session(db), `${b.name}|${dbA}|off`)
    await db.becomeUser()
    assert.equal(await session(db), `${a.name}|${dbA}|on`)
  })

  it("lets the profile's own keys win over the service's (as a connection string's do in libpq)", async () => {
    await using db = new Database({ profile: 'other_db', profilesFile, env })
    await db.connect()
    assert.equal(await session(db), `${a.name}|${dbB}|off`)
  })

  it('says which profile named a service that no file has', async () => {
    await using db = new Database({ profile: 'typo', profilesFile, env })
    await assert.rejects(db.connect(), {
      code: 'SERVICE_NOT_FOUND',
      message: /^definition of service "osb" not found \(named by profile "typo"\); looked in .*\.pg_service\.conf, .*etc\/pg_service\.conf$/,
    })
  })

  it('never shows the service file password', async () => {
    await using db = new Database({ profile: 'analysis', profilesFile, env })
    await db.connect()
    for (const shown of [inspect(db), String(db), JSON.stringify(db.snapshot()), JSON.stringify(db.connectionParams)]) assert.ok(!shown.includes(a.password))
  })
})
