// libpq's pgpass rules, one by one: each as a unit test of the parser/matcher and, where it
// decides a connection, as a real login on the test server (scram-sha-256 on TCP and socket).
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Database } from '../../src/database/database.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { DEFAULT_SOCKET_DIR, lookupPgpass, parsePgpassLine, readPgpassFile } from '../../src/connect/pgpass.ts'
import { admin, cleanEnv, freshDatabase, freshRole, scratchDir, server, uniqueName, writePgpass } from '../helpers.ts'

const npmPgpass = createRequire(import.meta.url)('pgpass/lib/helper.js') as {
  parseLine(line: string): Record<string, string> | null
  match(conn: Record<string, unknown>, entry: Record<string, string>): boolean
}

/** Escape a value for a pgpass field the way libpq reads it back. */
const esc = (v: string | number): string => String(v).replace(/[\\:]/g, (c) => '\\' + c)

let dir: string
let role: { name: string; password: string }
let dbname: string
let host: string
let port: number
let socketDir: string

before(async () => {
  dir = scratchDir()
  role = await freshRole('pgpass')
  dbname = (await freshDatabase('pgpass')).dbname
  ;({ host, port } = server())
  const [row] = await admin<{ unix_socket_directories: string }>('SHOW unix_socket_directories')
  socketDir = row!.unix_socket_directories.split(',')[0]!.trim()
})

/** Log in as the test role through a pgpass file; returns current_user or throws the typed error. */
async function login(lines: string[], options: { host?: string; user?: string; dbname?: string; password?: string; env?: Record<string, string>; mode?: number; file?: string } = {}): Promise<string> {
  const pgpassFile = options.file ?? writePgpass(dir, lines, options.mode)
  const db = new Database({
    host: options.host ?? host,
    port,
    user: options.user ?? role.name,
    dbname: options.dbname ?? dbname,
    ...(options.password !== undefined ? { password: options.password } : {}),
    pgpassFile,
    env: cleanEnv(options.env),
  })
  try {
    await db.connect()
    const { rows } = await db.query<{ u: string }>('select current_user as u')
    return rows[0]!.u
  } finally {
    await db.close()
  }
}

async function loginFails(lines: string[], options: Parameters<typeof login>[1] = {}): Promise<PgcrewError> {
  let caught: unknown
  await login(lines, options).then(
    () => assert.fail('expected the login to fail'),
    (error: unknown) => {
      caught = error
    },
  )
  assert.ok(caught instanceof PgcrewError, `expected a PgcrewError, got ${String(caught)}`)
  return caught
}

function assertNoSecret(error: unknown, ...secrets: string[]): void {
  const shown = [String(error), inspect(error, { depth: 8 }), JSON.stringify(error)].join('\n')
  for (const secret of secrets) assert.ok(!shown.includes(secret), 'a password leaked into an error')
}

describe('parsePgpassLine', () => {
  it('splits host:port:database:user:password', () => {
    const e = parsePgpassLine('db.example.org:5432:app:me:s3cret', 4)!
    assert.deepEqual({ ...e }, { host: 'db.example.org', port: '5432', database: 'app', user: 'me', line: 4, wildcards: [false, false, false, false] })
    assert.equal(e.password, 's3cret')
  })

  it('keeps the password out of enumeration, inspect and JSON', () => {
    const e = parsePgpassLine('*:*:*:*:s3cret')!
    assert.ok(!inspect(e).includes('s3cret'))
    assert.ok(!JSON.stringify(e).includes('s3cret'))
  })

  it('reads \\: and \\\\ as a literal colon and backslash', () => {
    const e = parsePgpassLine('h\\:x:5432:d\\\\b:u:p\\:w\\\\d')!
    assert.equal(e.host, 'h:x')
    assert.equal(e.database, 'd\\b')
    assert.equal(e.password, 'p:w\\d')
  })

  it('treats only a bare * as a wildcard; \\* is a literal star', () => {
    const bare = parsePgpassLine('*:*:*:*:pw')!
    assert.deepEqual(bare.wildcards, [true, true, true, true])
    const escaped = parsePgpassLine('\\*:5432:**:a*:pw')!
    assert.deepEqual(escaped.wildcards, [false, false, false, false])
    assert.equal(escaped.host, '*')
    assert.equal(escaped.database, '**')
  })

  it('ends the password at the first unescaped colon and ignores the rest', () => {
    assert.equal(parsePgpassLine('*:*:*:*:pw:more:fields')!.password, 'pw')
    assert.equal(parsePgpassLine('*:*:*:*:pw\\:more')!.password, 'pw:more')
  })

  it('skips # comment lines, but only when # is the very first character (libpq)', () => {
    assert.equal(parsePgpassLine('#*:*:*:*:pw'), undefined)
    assert.equal(parsePgpassLine('# a comment'), undefined)
    // libpq checks buf[0] == '#': with leading spaces the line is an entry whose host is "  #*".
    const spaced = parsePgpassLine('  #*:*:*:*:pw')!
    assert.equal(spaced.host, '  #*')
    assert.equal(spaced.wildcards[0], false)
  })

  it('accepts lines shorter than 11 characters (the npm pgpass module drops them)', () => {
    const e = parsePgpassLine('*:*:*:*:p')!
    assert.equal(e.password, 'p')
    assert.equal(npmPgpass.parseLine('*:*:*:*:p'), null)
  })

  it('skips blank lines and lines with fewer than five fields', () => {
    assert.equal(parsePgpassLine(''), undefined)
    assert.equal(parsePgpassLine('localhost:5432:db:user'), undefined)
  })

  it('strips every trailing CR and LF as pg_strip_crlf does', () => {
    assert.equal(parsePgpassLine('*:*:*:*:pw\r')!.password, 'pw')
    assert.equal(parsePgpassLine('*:*:*:*:pw\r\r\n')!.password, 'pw')
  })

  it('keeps a trailing lone backslash in the password (nothing left to escape)', () => {
    assert.equal(parsePgpassLine('*:*:*:*:pw\\')!.password, 'pw\\')
  })
})

describe('lookupPgpass matching', () => {
  const target = { host: 'db.example.org', port: 5432, database: 'app', user: 'me' }
  const find = (lines: string[], t: Partial<typeof target> = {}) => lookupPgpass({ ...target, ...t }, { file: writePgpass(dir, lines) })

  it('matches * in every field', () => {
    assert.equal(find(['*:*:*:*:pw'])?.password, 'pw')
  })

  it('lets the first matching line win and reports its line number', () => {
    const m = find(['# header', 'other:*:*:*:no', '*:*:app:me:first', '*:*:*:*:second'])!
    assert.equal(m.password, 'first')
    assert.equal(m.line, 3)
  })

  it('compares fields exactly: no trimming, no case folding, no numeric ports, no DNS', () => {
    assert.equal(find([' db.example.org:5432:app:me:pw']), undefined)
    assert.equal(find(['db.example.org :5432:app:me:pw']), undefined)
    assert.equal(find(['DB.example.org:5432:app:me:pw']), undefined)
    assert.equal(find(['db.example.org:05432:app:me:pw']), undefined)
    assert.equal(find(['localhost:5432:app:me:pw'], { host: '127.0.0.1' }), undefined)
    // The npm module compares ports as numbers, so it would have matched 05432.
    assert.equal(npmPgpass.match({ ...target, database: 'app' }, { host: 'db.example.org', port: '05432', database: 'app', user: 'me' }), true)
  })

  it("matches an empty host or libpq's default socket directory against localhost", () => {
    assert.equal(DEFAULT_SOCKET_DIR, '/var/run/postgresql')
    assert.equal(find(['localhost:5432:app:me:pw'], { host: '' })?.password, 'pw')
    assert.equal(find(['localhost:5432:app:me:pw'], { host: '/var/run/postgresql' })?.password, 'pw')
  })

  it('matches any other socket directory only literally', () => {
    assert.equal(find(['localhost:5432:app:me:pw'], { host: '/tmp' }), undefined)
    assert.equal(find(['localhost:5432:app:me:pw'], { host: '/var/run/postgresql/' }), undefined)
    assert.equal(find(['/tmp:5432:app:me:pw'], { host: '/tmp' })?.password, 'pw')
  })

  it('stops at the first match even when its password is empty (libpq then sends none)', () => {
    assert.equal(find(['*:*:*:me:', '*:*:*:*:later']), undefined)
  })

  it('reads nothing from a missing file', () => {
    assert.equal(lookupPgpass(target, { file: join(dir, 'no-such-file') }), undefined)
  })
})

describe('the pgpass file itself', () => {
  it("ignores a group- or world-readable file with exactly one warning, worded as libpq's", () => {
    const file = writePgpass(dir, ['*:*:*:*:pw'], 0o644)
    const warnings: string[] = []
    const warn = (m: string) => warnings.push(m)
    const t = { host: 'h', port: 5432, database: 'd', user: 'u' }
    assert.equal(lookupPgpass(t, { file, warn }), undefined)
    assert.equal(lookupPgpass(t, { file, warn }), undefined)
    assert.equal(warnings.length, 1)
    assert.match(warnings[0]!, /has group or world access; permissions should be u=rw \(0600\) or less/)
    assert.ok(warnings[0]!.includes(file))
    assert.ok(!warnings[0]!.includes('pw'), 'the warning must not show file contents')
  })

  it('skips lines with fewer than five fields as libpq does, and names them (never their text) in one warning', () => {
    const file = writePgpass(dir, ['# comment', 'h:5432:d:u', 'h:5432:d:u:right', 'just-a-secret-word', ''], 0o600)
    const warnings: string[] = []
    const warn = (m: string) => warnings.push(m)
    const t = { host: 'h', port: 5432, database: 'd', user: 'u' }
    assert.equal(lookupPgpass(t, { file, warn })?.password, 'right')
    assert.equal(lookupPgpass(t, { file, warn })?.password, 'right')
    assert.equal(warnings.length, 1)
    assert.match(warnings[0]!, /lines 2, 4 have fewer than 5 fields/)
    assert.ok(!warnings[0]!.includes('just-a-secret-word'))
  })

  it('ignores a 0640 file too (any group bit), and uses a 0400 one', () => {
    const warnings: string[] = []
    const t = { host: 'h', port: 5432, database: 'd', user: 'u' }
    assert.equal(lookupPgpass(t, { file: writePgpass(dir, ['*:*:*:*:pw'], 0o640), warn: (m) => warnings.push(m) }), undefined)
    assert.equal(lookupPgpass(t, { file: writePgpass(dir, ['*:*:*:*:pw'], 0o400), warn: (m) => warnings.push(m) })?.password, 'pw')
    assert.equal(warnings.length, 1)
  })

  it('ignores a device such as /dev/null with libpq\'s "not a plain file" warning', () => {
    const warnings: string[] = []
    assert.deepEqual(
      readPgpassFile('/dev/null', (m) => warnings.push(m)),
      [],
    )
    assert.match(warnings.join('\n'), /password file "\/dev\/null" is not a plain file/)
  })

  it('refuses a PGPASSFILE that is a directory with PGPASS_UNREADABLE (fails as root too)', () => {
    const d = join(dir, 'a-directory')
    mkdirSync(d)
    assert.throws(
      () => lookupPgpass({ host: 'h', port: 1, database: 'd', user: 'u' }, { env: { PGPASSFILE: d } }),
      (e: unknown) => {
        assert.ok(e instanceof PgcrewError)
        assert.equal(e.code, 'PGPASS_UNREADABLE')
        assert.ok(e.message.includes(d))
        assert.match(e.message, /directory/)
        return true
      },
    )
  })
})

describe('pgpass on a real connection', () => {
  it('logs in with a * line (10 characters, too short for the npm module)', async () => {
    const pw = role.password
    assert.equal(await login([`*:*:*:*:${esc(pw)}`]), role.name)
  })

  it('logs in with an exact host:port:database:user line', async () => {
    assert.equal(await login([`${host}:${port}:${dbname}:${role.name}:${esc(role.password)}`]), role.name)
  })

  it('reads \\: and \\\\ in the password and in the database name', async () => {
    const special = await specialRole('p:w\\d*')
    const colonDb = uniqueName('db:colon')
    await admin(`CREATE DATABASE "${colonDb}"`)
    after(() => admin(`DROP DATABASE IF EXISTS "${colonDb}" WITH (FORCE)`))
    assert.equal(await login([`*:*:${esc(colonDb)}:${special.name}:p\\:w\\\\d*`], { user: special.name, dbname: colonDb }), special.name)
  })

  it('ends the password at the first unescaped colon (trailing fields ignored)', async () => {
    assert.equal(await login([`*:*:*:*:${esc(role.password)}:ignored:too`]), role.name)
  })

  it('treats \\* as a literal star, so it does not match this host', async () => {
    const e = await loginFails([`\\*:*:*:*:${esc(role.password)}`])
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.match(e.message, /no password was found/)
  })

  it('skips # comment lines and still finds the line after them', async () => {
    assert.equal(await login(['# my servers', `#*:*:*:*:wrong`, `*:*:*:*:${esc(role.password)}`]), role.name)
  })

  it('uses the first matching line: a wrong password first means failure', async () => {
    assert.equal(await login([`*:*:*:${role.name}:${esc(role.password)}`, '*:*:*:*:wrong']), role.name)
    const e = await loginFails(['*:*:*:*:wrong', `*:*:*:${role.name}:${esc(role.password)}`])
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.match(e.message, /line 1/)
  })

  it('compares the host exactly: " 127.0.0.1" and "localhost" do not match 127.0.0.1', async () => {
    for (const line of [` ${host}:*:*:*:${esc(role.password)}`, `localhost:*:*:*:${esc(role.password)}`, `*:0${port}:*:*:${esc(role.password)}`]) {
      const e = await loginFails([line])
      assert.equal(e.code, 'AUTHENTICATION_FAILED', line)
    }
  })

  it("matches the server's own socket directory literally, never as localhost", async () => {
    assert.notEqual(socketDir, DEFAULT_SOCKET_DIR)
    assert.equal(await login([`${esc(socketDir)}:${port}:*:*:${esc(role.password)}`], { host: socketDir }), role.name)
    const e = await loginFails([`localhost:${port}:*:*:${esc(role.password)}`], { host: socketDir })
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.match(e.message, /socket/)
  })

  it('logs in with a line whose password ends in CR CR (pg_strip_crlf strips them all)', async () => {
    assert.equal(await login([`*:*:*:*:${esc(role.password)}\r\r`]), role.name)
  })

  it('sends no password when the first matching line has an empty one', async () => {
    const e = await loginFails([`*:*:*:${role.name}:`, `*:*:*:*:${esc(role.password)}`])
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
  })

  it('ignores a world-readable file with one warning on stderr, however often it connects', async () => {
    const file = writePgpass(dir, [`*:*:*:*:${esc(role.password)}`], 0o644)
    const written: string[] = []
    const original = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      written.push(String(chunk))
      return (original as (...a: unknown[]) => boolean)(chunk, ...rest)
    }) as typeof process.stderr.write
    try {
      for (let i = 0; i < 2; i++) {
        const e = await loginFails([], { file })
        assert.equal(e.code, 'AUTHENTICATION_FAILED')
      }
    } finally {
      process.stderr.write = original
    }
    const warnings = written.filter((w) => w.includes(file))
    assert.equal(warnings.length, 1, warnings.join(''))
    assert.match(warnings[0]!, /group or world access/)
  })

  it('fails with PGPASS_UNREADABLE when PGPASSFILE is a directory', async () => {
    const d = join(dir, 'pgpass-dir')
    mkdirSync(d)
    const db = new Database({ host, port, user: role.name, dbname, env: cleanEnv({ PGPASSFILE: d }) })
    try {
      await assert.rejects(db.connect(), (e: unknown) => e instanceof PgcrewError && e.code === 'PGPASS_UNREADABLE' && e.message.includes(d))
    } finally {
      await db.close()
    }
  })

  it('reads PGPASSFILE from the environment when no pgpassFile option is given', async () => {
    const file = writePgpass(dir, [`*:*:*:*:${esc(role.password)}`])
    const db = new Database({ host, port, user: role.name, dbname, env: cleanEnv({ PGPASSFILE: file }) })
    try {
      assert.equal(await db.connect(), true)
    } finally {
      await db.close()
    }
  })
})

describe('password precedence: explicit option > PGPASSWORD > pgpass', () => {
  it('PGPASSWORD beats the pgpass file', async () => {
    assert.equal(await login(['*:*:*:*:wrong'], { env: { PGPASSWORD: role.password } }), role.name)
    const e = await loginFails([`*:*:*:*:${esc(role.password)}`], { env: { PGPASSWORD: 'wrong-env' } })
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.match(e.message, /PGPASSWORD/)
  })

  it('the explicit password option beats PGPASSWORD and the file', async () => {
    assert.equal(await login(['*:*:*:*:wrong'], { password: role.password, env: { PGPASSWORD: 'wrong-env' } }), role.name)
    const e = await loginFails([`*:*:*:*:${esc(role.password)}`], { password: 'wrong-opt', env: { PGPASSWORD: role.password } })
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.match(e.message, /password option/)
  })
})

describe('authentication failure with a pgpass password', () => {
  it("names the role and the file (libpq's hint) and never shows the password", async () => {
    const wrong = 'wrong-' + role.password
    const file = writePgpass(dir, ['# first line is a comment', `*:*:*:*:${esc(wrong)}`])
    const e = await loginFails([], { file })
    assert.equal(e.code, 'AUTHENTICATION_FAILED')
    assert.ok(e.message.includes(`role "${role.name}"`), e.message)
    assert.ok(e.message.includes(`password retrieved from file "${file}"`), e.message)
    assert.match(e.message, /line 2/)
    assertNoSecret(e, wrong, role.password)
  })
})

/** A role whose password holds characters pgpass must escape. */
async function specialRole(password: string): Promise<{ name: string; password: string }> {
  const name = uniqueName('pgpass_special')
  await admin(`CREATE ROLE "${name}" LOGIN PASSWORD '${password.replaceAll("'", "''")}'`)
  after(() => admin(`DROP ROLE IF EXISTS "${name}"`))
  return { name, password }
}
