// Profiles as a user writes them: INI files, merged project-then-user, chosen by this host's FQDN.
import { describe, it, before } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { hostname, networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { defaultHost } from '../../src/connect/connection-params.ts'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { DEFAULT_SOCKET_DIR } from '../../src/connect/pgpass.ts'
import { chooseProfile, loadProfiles, machineFqdn, profileFiles } from '../../src/connect/profiles.ts'
import { isThisMachine } from '../../src/connect/local-socket.ts'
import { admin, cleanEnv, freshDatabase, freshRole, scratchDir, server, writePgpass } from '../helpers.ts'

let dir: string
let n = 0
/** Write an INI file (mode 0600 unless told) and return its path. */
function ini(text: string, mode = 0o600): string {
  const file = join(dir, `profiles-${++n}.ini`)
  writeFileSync(file, text)
  chmodSync(file, mode)
  return file
}

function expectError(fn: () => unknown, code: string, ...patterns: RegExp[]): PgcrewError {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }
  assert.ok(caught instanceof PgcrewError, `expected PgcrewError ${code}, got ${String(caught)}`)
  assert.equal(caught.code, code, caught.message)
  for (const p of patterns) assert.match(caught.message, p)
  return caught
}

before(() => {
  dir = scratchDir()
})

describe('profile files', () => {
  it('are the project file then the user file; PGCREW_PROFILES replaces both', () => {
    assert.deepEqual(profileFiles({ HOME: '/home/ann' }, '/proj'), ['/proj/config/profiles.ini', '/home/ann/.config/pgcrew/profiles.ini'])
    assert.deepEqual(profileFiles({ HOME: '/home/ann', PGCREW_PROFILES: 'mine.ini' }, '/proj'), ['/proj/mine.ini'])
  })

  it('are found at the project root (the nearest package.json up) from any subdirectory, as ESLint finds its config', () => {
    const project = join(dir, 'proj')
    mkdirSync(join(project, 'src', 'deep'), { recursive: true })
    writeFileSync(join(project, 'package.json'), '{}')
    assert.equal(profileFiles({ HOME: '/home/ann' }, join(project, 'src', 'deep'))[0], join(project, 'config', 'profiles.ini'))
    assert.equal(profileFiles({ HOME: '/home/ann' }, project)[0], join(project, 'config', 'profiles.ini'))
  })

  it("merge per key with the later (user) file winning, and list the user file's profiles first", () => {
    const project = ini('[a]\nhost = project-host\nport = 5001\n\n[b]\nhost = b-host\n')
    const user = ini('[c]\nhost = c-host\n\n[a]\nport = 5002\n')
    const set = loadProfiles({ files: [project, user], env: {} })
    assert.deepEqual(
      set.profiles.map((p) => p.name),
      ['c', 'a', 'b'],
    )
    const a = set.get('a')!
    assert.equal(a.host, 'project-host')
    assert.equal(a.port, 5002)
    assert.deepEqual(a.files, [project, user])
  })

  it('read only PGCREW_PROFILES when it is set, even with a user file present', () => {
    const home = join(dir, 'home')
    mkdirSync(join(home, '.config', 'pgcrew'), { recursive: true })
    writeFileSync(join(home, '.config', 'pgcrew', 'profiles.ini'), '[from_home]\nhost = h\n')
    // Without it, the user file is read (its profiles first, before any project config/profiles.ini).
    assert.equal(loadProfiles({ env: { HOME: home } }).profiles[0]!.name, 'from_home')
    const only = ini('[only]\nhost = x\n')
    assert.deepEqual(
      loadProfiles({ env: { HOME: home, PGCREW_PROFILES: only } }).profiles.map((p) => p.name),
      ['only'],
    )
  })

  it('refuse a PGCREW_PROFILES file that does not exist', () => {
    expectError(() => loadProfiles({ env: { PGCREW_PROFILES: join(dir, 'nope.ini') } }), 'PROFILE_FILE_INVALID', /does not exist/)
  })

  it('expand ${VAR} and ${VAR:-default} from the environment, and refuse an unset ${VAR}', () => {
    const file = ini('[p]\nhost = ${DB_HOST}\ndbname = ${DB_NAME:-fallback}_v\nuser = ${DB_USER:-}me\n')
    const p = loadProfiles({ files: [file], env: { DB_HOST: 'db.example.org', DB_USER: 'you' } }).get('p')!
    assert.equal(p.host, 'db.example.org')
    assert.equal(p.dbname, 'fallback_v')
    assert.equal(p.user, 'youme')
    expectError(() => loadProfiles({ files: [file], env: {} }), 'PROFILE_FILE_INVALID', /\$\{DB_HOST\} is not set/, /\[p\] host/)
  })

  it('read keys with their types: port and timeouts as numbers, readonly as a boolean', () => {
    const file = ini('[p]\nport = 6543\nreadonly = false\nconnect_timeout = 5\npooling = per-transaction\napplication_name = etl\n')
    const p = loadProfiles({ files: [file], env: {} }).get('p')!
    assert.equal(p.port, 6543)
    assert.equal(p.readonly, false)
    assert.equal(p.connect_timeout, 5)
    assert.equal(p.pooling, 'per-transaction')
    assert.equal(p.application_name, 'etl')
  })
})

describe('bad profile files', () => {
  it('refuse a dotted section name and say why', () => {
    const file = ini('[utah]\nhost = a\n\n[sdss.utah]\nhost = b\n')
    expectError(() => loadProfiles({ files: [file], env: {} }), 'PROFILE_DOTTED_NAME', new RegExp(`${file}:4`), /contains a dot/, /nesting/, /sdss-utah/)
  })

  it('refuse malformed INI with file:line', () => {
    expectError(() => loadProfiles({ files: [ini('[a]\nhost = x\n[broken\n')], env: {} }), 'PROFILE_FILE_INVALID', /:3: malformed section header/)
    expectError(() => loadProfiles({ files: [ini('[a]\nhost = x\njust some words\n')], env: {} }), 'PROFILE_FILE_INVALID', /:3: expected "key = value"/)
    expectError(() => loadProfiles({ files: [ini('host = x\n[a]\n')], env: {} }), 'PROFILE_FILE_INVALID', /:1: "host" appears before any \[profile\]/)
  })

  it('never echo a mistyped password line', () => {
    const e = expectError(() => loadProfiles({ files: [ini('[a]\npassword: hunter2-secret\n')], env: {} }), 'PROFILE_FILE_INVALID', /:2:/)
    assert.ok(!e.message.includes('hunter2-secret'), e.message)
  })

  it('refuse an unknown key, listing the known ones', () => {
    expectError(() => loadProfiles({ files: [ini('[a]\nhostname = x\n')], env: {} }), 'PROFILE_FILE_INVALID', /unknown key "hostname"/, /known keys: host, port/)
  })

  it('refuse a bad port', () => {
    for (const port of ['99999', '0', '65536', '-1']) {
      expectError(() => loadProfiles({ files: [ini(`[a]\nport = ${port}\n`)], env: {} }), 'PROFILE_FILE_INVALID', /:2: port in profile "a" must be from 1 to 65535/)
    }
    for (const port of ['abc', '54.3']) {
      expectError(() => loadProfiles({ files: [ini(`[a]\nport = ${port}\n`)], env: {} }), 'PROFILE_FILE_INVALID', /:2: port in profile "a" must be a whole number \(decimal digits only\)/)
    }
  })

  it("regression: read numbers as psql does, refusing 0x1538 and 5e3 (JavaScript's Number() read them as 5432 and 5000)", () => {
    // psql: invalid integer value "0x1538" for connection option "port"; the same for the timeouts.
    for (const [key, value] of [
      ['port', '0x1538'],
      ['port', '5e3'],
      ['port', '5432abc'],
      ['connect_timeout', '5e3'],
      ['connect_timeout', '0x10'],
      ['statement_timeout', '1e4'],
      ['statement_timeout', '0b11'],
    ]) {
      expectError(
        () => loadProfiles({ files: [ini(`[a]\nhost = h\n${key} = ${value}\n`)], env: {} }),
        'PROFILE_FILE_INVALID',
        new RegExp(`:3: ${key} in profile "a" must be a whole number \\(decimal digits only\\), not "${value}"`),
      )
    }
    // What libpq's strtol accepts stays accepted: a sign, and the zero that means "no timeout".
    const p = loadProfiles({ files: [ini('[a]\nport = +6543\nconnect_timeout = 0\nstatement_timeout = 007\n')], env: {} }).get('a')!
    assert.deepEqual([p.port, p.connect_timeout, p.statement_timeout], [6543, 0, 7])
  })

  it('regression: refuse a profile given twice in one file, naming both lines (ini merged them, later wins)', () => {
    const file = ini('[a]\nhost = first\n\n[b]\nhost = x\n\n[a]\nport = 5433\n')
    expectError(() => loadProfiles({ files: [file], env: {} }), 'PROFILE_FILE_INVALID', new RegExp(`^${file}:7: profile "a" appears twice in ${file} \\(lines 1 and 7\\)`))
    // The same profile in the project file and the user file is the documented merge, not a duplicate.
    assert.equal(loadProfiles({ files: [ini('[a]\nhost = x\n'), ini('[a]\nport = 5433\n')], env: {} }).get('a')!.port, 5433)
  })

  it('regression: refuse a key set twice in one profile, naming both lines (a stale port above a new one won silently)', () => {
    const file = ini('[a]\nport = 5432\nhost = x\n; moved the server\nport = 6543\n[b]\nport = 5432\n')
    expectError(() => loadProfiles({ files: [file], env: {} }), 'PROFILE_FILE_INVALID', new RegExp(`^${file}:5: profile "a" sets "port" twice \\(lines 2 and 5\\); keep one`))
  })

  it('regression: an unknown key names its file and line, and database = … suggests dbname', () => {
    const file = ini('[a]\nhost = x\n\ndatabase = sdss5db\n')
    expectError(() => loadProfiles({ files: [file], env: {} }), 'PROFILE_FILE_INVALID', new RegExp(`^${file}:4: unknown key "database" in profile "a" \\(did you mean "dbname"\\?\\)`))
    expectError(() => loadProfiles({ files: [ini('[a]\nusername = me\n')], env: {} }), 'PROFILE_FILE_INVALID', /:2: unknown key "username" .*did you mean "user"/)
    expectError(() => loadProfiles({ files: [ini('[a]\nPort = 5432\n')], env: {} }), 'PROFILE_FILE_INVALID', /:2: unknown key "Port" .*did you mean "port"/)
  })

  it('regression: a binary file, or a line of control characters and megabytes, is not echoed back whole', () => {
    const binary = join(dir, 'binary.ini')
    writeFileSync(binary, Buffer.concat([Buffer.from('[a]\nhost = x\n'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x1b, 0x5b, 0x32, 0x4a]), Buffer.alloc(5000, 0x41)]))
    const e1 = expectError(() => loadProfiles({ files: [binary], env: {} }), 'PROFILE_FILE_INVALID', /is not a text file/)
    assert.ok(e1.message.length < 300 && !/[\u0000-\u001f\u007f]/.test(e1.message), e1.message)
    const e2 = expectError(() => loadProfiles({ files: [ini('[a]\n[\u001b[2J' + 'x'.repeat(100_000) + '\n')], env: {} }), 'PROFILE_FILE_INVALID', /:2: malformed section header "\[\\u001b\[2Jx+…"/)
    assert.ok(e2.message.length < 300 && !/[\u0000-\u001f\u007f]/.test(e2.message), e2.message)
  })

  it('refuse a password in a file others can read, and accept it at 0600 without showing it', () => {
    const text = '[a]\nhost = x\npassword = hunter2-secret\n'
    const loose = ini(text, 0o644)
    const e = expectError(() => loadProfiles({ files: [loose], env: {} }), 'PROFILE_PASSWORD_INSECURE', /chmod 600/, /mode 644/)
    assert.ok(!e.message.includes('hunter2-secret'))
    const p = loadProfiles({ files: [ini(text, 0o600)], env: {} }).get('a')!
    assert.equal(p.password, 'hunter2-secret')
    assert.ok(!inspect(p).includes('hunter2-secret'))
    assert.ok(!JSON.stringify(p).includes('hunter2-secret'))
  })

  it('keep the profile after a "[name] ; comment" header separate (ini 6 merged it into the one before)', () => {
    const file = ini('[utah]\nhost = operations.sdss.org\n\n[local] ; this machine\nhost = /var/run/postgresql\n')
    const set = loadProfiles({ files: [file], env: {} })
    assert.deepEqual(
      set.profiles.map((p) => p.name),
      ['utah', 'local'],
    )
    assert.equal(set.get('utah')!.host, 'operations.sdss.org')
    assert.equal(set.get('local')!.host, '/var/run/postgresql')
  })

  it('refuse a domain that is not a regular expression', () => {
    const set = loadProfiles({ files: [ini('[a]\ndomain = (unclosed\n')], env: {} })
    expectError(() => chooseProfile(set, undefined, { PGCREW_HOSTNAME: 'x.y' }), 'PROFILE_FILE_INVALID', /not a valid regular expression/)
  })
})

describe('the local-socket rule: which hosts are this machine', () => {
  const env = {}
  it("counts this machine's host names (any case, short or with a trailing dot) and its own addresses", () => {
    const name = hostname()
    for (const h of [name, name.toUpperCase(), `${name}.`, name.split('.')[0]!]) assert.equal(isThisMachine(h, env), true, h)
    const own = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal)
      .map((a) => a!.address)
    for (const address of own) assert.equal(isThisMachine(address, env), true, address)
  })

  it('does not count loopback (asking for TCP on purpose, an SSH tunnel), other hosts, or socket directories', () => {
    for (const h of ['localhost', '127.0.0.1', '127.0.1.1', '::1', '[::1]', '192.0.2.77', 'db.example.org', '/var/run/postgresql', '']) assert.equal(isThisMachine(h, env), false, h)
  })

  it('takes PGCREW_HOSTNAME as the only name of this machine when it is set', () => {
    assert.equal(isThisMachine('node1.cluster.example.edu', { PGCREW_HOSTNAME: 'node1.cluster.example.edu' }), true)
    assert.equal(isThisMachine('node1', { PGCREW_HOSTNAME: 'node1.cluster.example.edu' }), true)
    assert.equal(isThisMachine(hostname(), { PGCREW_HOSTNAME: 'elsewhere.example.org' }), hostname().split('.')[0] === 'elsewhere')
  })

  it('refuses a relative socket_dir, and socket_dir with local_socket = false', () => {
    expectError(() => loadProfiles({ files: [ini('[a]\nhost = h\nsocket_dir = run/pg\n')], env: {} }), 'PROFILE_FILE_INVALID', /socket_dir must be an absolute directory .*"run\/pg"/)
    expectError(
      () => loadProfiles({ files: [ini('[a]\nhost = h\nsocket_dir = /run/pg\nlocal_socket = false\n')], env: {} }),
      'PROFILE_FILE_INVALID',
      /socket_dir is never used with local_socket = false/,
    )
    expectError(() => loadProfiles({ files: [ini('[a]\nsocket = /run/pg\n')], env: {} }), 'PROFILE_FILE_INVALID', /unknown key "socket" .*did you mean "socket_dir"/)
  })
})

describe('choosing a profile', () => {
  const text = [
    '[utah]',
    'host = operations.sdss.org',
    'domain = .*\\.utah\\.edu ; whole-FQDN regex',
    '',
    '[cluster]',
    'host = db.cluster.example.edu',
    'domain = .*\\.cluster\\.example\\.edu',
    '',
    '[partial]',
    'host = nowhere',
    'domain = node1',
    '',
    '[local]',
    'host = /var/run/postgresql',
    '',
  ].join('\n')
  let set: ReturnType<typeof loadProfiles>

  before(() => {
    set = loadProfiles({ files: [ini(text)], env: {} })
  })

  it("takes PGCREW_HOSTNAME as this machine's FQDN", () => {
    assert.equal(machineFqdn({ PGCREW_HOSTNAME: 'node7.example.org' }), 'node7.example.org')
  })

  it('matches the domain regex against the whole FQDN', () => {
    const choice = chooseProfile(set, undefined, { PGCREW_HOSTNAME: 'node1.cluster.example.edu' })
    assert.equal(choice.profile.name, 'cluster')
    assert.match(choice.reason, /node1\.cluster\.example\.edu/)
    assert.equal(chooseProfile(set, undefined, { PGCREW_HOSTNAME: 'login.utah.edu' }).profile.name, 'utah')
  })

  it('does not count a partial match ("node1" inside node1.cluster…, utah.edu inside a longer name)', () => {
    const only = loadProfiles({ files: [ini('[partial]\ndomain = node1\n[suffix]\ndomain = utah\\.edu\n')], env: {} })
    expectError(() => chooseProfile(only, undefined, { PGCREW_HOSTNAME: 'node1.cluster.example.edu' }), 'NO_PROFILE_MATCHES')
    expectError(() => chooseProfile(only, undefined, { PGCREW_HOSTNAME: 'login.utah.edu' }), 'NO_PROFILE_MATCHES')
    expectError(() => chooseProfile(only, undefined, { PGCREW_HOSTNAME: 'utah.edu.evil.org' }), 'NO_PROFILE_MATCHES')
  })

  it("prefers the user file's profiles when several domains match", () => {
    const project = ini('[proj]\ndomain = .*\\.example\\.edu\n')
    const user = ini('[mine]\ndomain = .*\\.example\\.edu\n')
    assert.equal(chooseProfile(loadProfiles({ files: [project, user], env: {} }), undefined, { PGCREW_HOSTNAME: 'a.example.edu' }).profile.name, 'mine')
  })

  it('ranks explicit name > PGCREW_PROFILE > domain > local', () => {
    const env = { PGCREW_HOSTNAME: 'node1.cluster.example.edu', PGCREW_PROFILE: 'utah' }
    assert.deepEqual(pick(chooseProfile(set, 'partial', env)), ['partial', 'named explicitly'])
    assert.deepEqual(pick(chooseProfile(set, undefined, env)), ['utah', 'named by PGCREW_PROFILE'])
    assert.equal(chooseProfile(set, undefined, { PGCREW_HOSTNAME: 'node1.cluster.example.edu' }).profile.name, 'cluster')
    assert.equal(chooseProfile(set, undefined, { PGCREW_HOSTNAME: 'laptop.home' }).profile.name, 'local')
  })

  it('says which profiles exist when none matches and there is no local', () => {
    const noLocal = loadProfiles({ files: [ini('[utah]\ndomain = .*\\.utah\\.edu\n[apo]\ndomain = .*\\.apo\\.nmsu\\.edu\n')], env: {} })
    expectError(() => chooseProfile(noLocal, undefined, { PGCREW_HOSTNAME: 'laptop.home' }), 'NO_PROFILE_MATCHES', /laptop\.home/, /known: utah, apo/, /PGCREW_PROFILE/)
  })

  it('names the known profiles when a named one does not exist', () => {
    expectError(() => chooseProfile(set, 'nope', {}), 'PROFILE_NOT_FOUND', /"nope"/, /known: utah, cluster, partial, local/)
  })

  it('suggests the close match for a typo, and says when the name came from PGCREW_PROFILE', () => {
    expectError(() => chooseProfile(set, 'uta', {}), 'PROFILE_NOT_FOUND', /no profile named "uta" \(did you mean "utah"\?\)/)
    expectError(() => chooseProfile(set, undefined, { PGCREW_PROFILE: 'clustr' }), 'PROFILE_NOT_FOUND', /"clustr" \(from PGCREW_PROFILE\) \(did you mean "cluster"\?\)/)
  })
})

function pick(choice: { profile: { name: string }; reason: string }): [string, string] {
  return [choice.profile.name, choice.reason]
}

describe('profiles on a real connection', () => {
  let role: { name: string; password: string }
  let dbname: string
  let port: number
  before(async () => {
    role = await freshRole('prof')
    dbname = (await freshDatabase('prof')).dbname
    port = server().port
  })

  function profilesFor(host: string, extra = ''): string {
    return ini(
      [
        '[utah]',
        'host = 192.0.2.1 ; TEST-NET, never reached',
        `port = ${port}`,
        'domain = .*\\.utah\\.edu',
        '',
        '[cluster]',
        `host = ${host}`,
        `port = ${port}`,
        `dbname = ${dbname}`,
        `user = ${role.name}`,
        'readonly = false',
        'domain = .*\\.cluster\\.example\\.edu',
        extra,
      ].join('\n'),
    )
  }

  it('picks the profile whose domain matches PGCREW_HOSTNAME, and db.profile says so', async () => {
    const pgpassFile = writePgpass(dir, [`127.0.0.1:${port}:${dbname}:${role.name}:${role.password}`])
    const db = new Database({ profilesFile: profilesFor('127.0.0.1'), env: cleanEnv({ PGCREW_HOSTNAME: 'node1.cluster.example.edu' }), pgpassFile })
    try {
      assert.equal(await db.connect(), true)
      assert.equal(db.profile, 'cluster')
      const { rows } = await db.query<{ u: string; d: string }>('select current_user as u, current_database() as d')
      assert.deepEqual(rows[0], { u: role.name, d: dbname })
      assert.match(String(db), /profile cluster/)
    } finally {
      await db.close()
    }
  })

  it('uses a password from a 0600 profile file for the login', async () => {
    const file = profilesFor('127.0.0.1', `password = ${role.password}`)
    const db = new Database({ profile: 'cluster', profilesFile: file, env: cleanEnv(), pgpassFile: writePgpass(dir, []) })
    try {
      assert.equal(await db.connect(), true)
      assert.equal(db.user, role.name)
      for (const shown of [inspect(db), String(db), JSON.stringify(db), JSON.stringify(db.snapshot()), JSON.stringify(db.connectionParams), inspect(db.listProfiles())]) {
        assert.ok(!shown.includes(role.password), 'the profile password leaked')
      }
    } finally {
      await db.close()
    }
  })

  it('refuses to connect with a password in a 0644 profile file', async () => {
    const file = profilesFor('127.0.0.1', `password = ${role.password}`)
    chmodSync(file, 0o644)
    const db = new Database({ profile: 'cluster', profilesFile: file, env: cleanEnv() })
    try {
      await assert.rejects(db.connect(), (e: unknown) => e instanceof PgcrewError && e.code === 'PROFILE_PASSWORD_INSECURE' && !e.message.includes(role.password))
    } finally {
      await db.close()
    }
  })

  it("reaches a profile whose host is this machine's FQDN through libpq's default host instead", async () => {
    // The host name is unresolvable on purpose: only the switch to defaultHost() can connect.
    const fqdn = 'node1.cluster.example.edu'
    const pgpassFile = writePgpass(dir, [`localhost:${port}:${dbname}:${role.name}:${role.password}`])
    const db = new Database({ profilesFile: profilesFor(fqdn), env: cleanEnv({ PGCREW_HOSTNAME: fqdn }), pgpassFile })
    try {
      if (defaultHost() === 'localhost') {
        // No /var/run/postgresql here: libpq's default is localhost over TCP, where the test server listens.
        assert.equal(await db.connect(), true)
        assert.equal(db.connectionParams?.host, 'localhost')
        assert.equal((await db.query<{ u: string }>('select current_user as u')).rows[0]!.u, role.name)
      } else {
        // The default socket directory exists (a system PostgreSQL): the attempt must go there, not to the FQDN.
        const ok = await db.connect().then(
          () => db.connectionParams?.host === DEFAULT_SOCKET_DIR,
          (e: unknown) => e instanceof PgcrewError && String(e.details.target).includes(`socket ${DEFAULT_SOCKET_DIR}`),
        )
        assert.ok(ok, 'the connection did not go to the local socket')
      }
    } finally {
      await db.close()
    }
  })

  it("reaches a profile whose host is this machine's name through its socket_dir, and says so in connectionParams", async () => {
    const [{ dirs }] = await admin<{ dirs: string }>("select current_setting('unix_socket_directories') as dirs")
    const socket = dirs.split(',')[0]!.trim()
    // libpq's pgpass rule: a socket directory other than the default matches only itself.
    const pgpassFile = writePgpass(dir, [`${socket}:${port}:${dbname}:${role.name}:${role.password}`])
    const own = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal)
      .map((a) => a!.address)
    // The name always; the machine's own addresses where it has any (a machine with no network has none).
    for (const host of [hostname(), ...own.slice(0, 1)]) {
      const file = ini(`[here]\nhost = ${host}\nport = ${port}\ndbname = ${dbname}\nuser = ${role.name}\nreadonly = false\nsocket_dir = ${socket}\n`)
      await using db = new Database({ profile: 'here', profilesFile: file, env: cleanEnv(), pgpassFile })
      await db.connect()
      assert.equal(db.connectionParams?.host, socket, host)
      assert.equal(db.connectionParams?.socketFor, host)
      const { rows } = await db.query<{ via: string }>("select case when inet_server_addr() is null then 'socket' else 'tcp' end as via")
      assert.equal(rows[0]!.via, 'socket', host)
    }
  })

  it('keeps TCP to the named host with local_socket = false', async () => {
    const file = ini(`[here]\nhost = ${hostname()}\nport = ${port}\ndbname = ${dbname}\nuser = ${role.name}\nlocal_socket = false\nconnect_timeout = 5\n`)
    await using db = new Database({ profile: 'here', profilesFile: file, env: cleanEnv(), pgpassFile: writePgpass(dir, [`*:*:*:${role.name}:${role.password}`]) })
    // The test server listens on 127.0.0.1 only: what the host name resolves to may or may not reach it.
    const target = await db.connect().then(
      () => `${db.connectionParams!.host} ${db.connectionParams!.socketFor ?? ''}`,
      (e: PgcrewError) => String(e.details.target),
    )
    assert.match(target, new RegExp(`^(${role.name}@)?${hostname()}\\b`))
    assert.doesNotMatch(target, /socket/)
  })

  it('regression: a Database whose profile name came from PGCREW_PROFILE says so when no such profile exists', async () => {
    const db = new Database({ profilesFile: profilesFor('127.0.0.1'), env: cleanEnv({ PGCREW_PROFILE: 'clustr' }) })
    try {
      await assert.rejects(db.connect(), { code: 'PROFILE_NOT_FOUND', message: /^no profile named "clustr" \(from PGCREW_PROFILE\) \(did you mean "cluster"\?\)/ })
    } finally {
      await db.close()
    }
    // Named in the options, it is the caller's own word: no source to add.
    const named = new Database({ profile: 'clustr', profilesFile: profilesFor('127.0.0.1'), env: cleanEnv({ PGCREW_PROFILE: 'utah' }) })
    try {
      await assert.rejects(named.connect(), { code: 'PROFILE_NOT_FOUND', message: /^no profile named "clustr" \(did you mean/ })
    } finally {
      await named.close()
    }
  })

  it('connects to an explicit profile over PGCREW_PROFILE and the domain', async () => {
    const pgpassFile = writePgpass(dir, [`*:*:*:*:${role.password}`])
    const db = new Database({ profile: 'cluster', profilesFile: profilesFor('127.0.0.1'), env: cleanEnv({ PGCREW_PROFILE: 'utah', PGCREW_HOSTNAME: 'x.utah.edu' }), pgpassFile })
    try {
      assert.equal(await db.connect(), true)
      assert.equal(db.profile, 'cluster')
    } finally {
      await db.close()
    }
  })
})
