// Test helpers: every suite gets its own databases and roles on the real server npm test started.
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after } from 'node:test'
import pg from 'pg'

// Cleanups run once when the test file ends. A top-level after() registered at import time belongs to
// the file; one registered inside a before() hook would run as soon as that hook finished.
const cleanups: Array<() => unknown> = []
const roleCleanups: Array<() => unknown> = []
after(async () => {
  for (const fn of cleanups.reverse()) await fn()
  // Roles go last: objects and grants in the test databases depend on them.
  for (const fn of roleCleanups) await fn()
})

/** Run `fn` when this test file ends (last registered runs first). */
export function atEnd(fn: () => unknown): void {
  cleanups.push(fn)
}

/** The superuser URL of the test server (set by `npm test`, or by you). */
export function testUrl(): string {
  const url = process.env.PGCREW_TEST_URL
  if (!url) throw new Error('PGCREW_TEST_URL is not set: run the suite with `npm test` (it starts a temporary PostgreSQL)')
  return url
}

/** Connection facts of the test server, superuser password included (tests only). */
export function server(): { host: string; port: number; user: string; password: string } {
  const u = new URL(testUrl())
  return { host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
}

/** Run SQL as the superuser on one database (default `postgres`). */
export async function admin<T = unknown>(sql: string, params: unknown[] = [], dbname = 'postgres'): Promise<T[]> {
  const client = new pg.Client({ connectionString: urlFor(dbname) })
  await client.connect()
  try {
    return (await client.query(sql, params)).rows as T[]
  } finally {
    await client.end()
  }
}

/** The superuser URL for another database on the test server. */
export function urlFor(dbname: string, user?: { name: string; password: string }): string {
  const u = new URL(testUrl())
  u.pathname = '/' + encodeURIComponent(dbname)
  if (user) {
    u.username = encodeURIComponent(user.name)
    u.password = encodeURIComponent(user.password)
  }
  return u.toString()
}

/** A short unique name for databases and roles of this test file. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`
}

/** Create an empty database, dropped when the test file ends. */
export async function freshDatabase(prefix = 'test'): Promise<{ dbname: string; url: string }> {
  const dbname = uniqueName(prefix)
  await admin(`CREATE DATABASE "${dbname}"`)
  atEnd(() => admin(`DROP DATABASE IF EXISTS "${dbname}" WITH (FORCE)`))
  return { dbname, url: urlFor(dbname) }
}

/** Create a login role with a password, dropped when the test file ends. */
export async function freshRole(prefix = 'role', options = ''): Promise<{ name: string; password: string }> {
  const name = uniqueName(prefix)
  const password = 'pw-' + randomBytes(9).toString('hex')
  await admin(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}' ${options}`)
  roleCleanups.push(async () => {
    await admin(`DROP OWNED BY "${name}" CASCADE`).catch(() => {})
    await admin(`DROP ROLE IF EXISTS "${name}"`)
  })
  return { name, password }
}

/** A scratch directory removed when the test file ends. */
export function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgcrew-test-'))
  atEnd(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Write a pgpass file with the given lines and mode (default 0600). */
export function writePgpass(dir: string, lines: string[], mode = 0o600): string {
  const file = join(dir, `pgpass-${randomBytes(3).toString('hex')}`)
  writeFileSync(file, lines.join('\n') + '\n')
  chmodSync(file, mode)
  return file
}

/** Environment for a Database in tests: nothing inherited from the developer's PG* settings. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { HOME: '/nonexistent', PATH: process.env.PATH, ...extra }
}

/** Poll until `check` returns true (server-side effects such as backend exit are asynchronous). */
export async function eventually(check: () => Promise<boolean>, timeoutMillis = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMillis
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return check()
}

/** A writable stream that keeps what is written (a CLI's stdout or stderr in a test). */
export function collector(): { stream: Writable; text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk))
      cb()
    },
  })
  return { stream, text: () => chunks.join('') }
}
