// migrate() against a real PostgreSQL: create, upgrade, failure, templates, the 10-runner race, seeding.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { command as initdb } from '../../src/cli/initdb-command.ts'
import { UsageError } from '../../src/cli/cli-command.ts'
import { Database } from '../../src/database/database.ts'
import { migrate, migrationLockKey } from '../../src/schema/migrate.ts'
import type { MigrateOptions } from '../../src/schema/migrate.ts'
import { quoteIdent } from '../../src/toolkit/quote.ts'
import { admin, cleanEnv, scratchDir, uniqueName, urlFor } from '../helpers.ts'

const fixtures = join(import.meta.dirname, '../fixtures', 'migrate')
const shop = join(fixtures, 'shop')
const shopV01 = join(fixtures, 'shop-0.1')

// Databases first, roles last: a role that holds grants in a database cannot be dropped before it.
const databases: string[] = []
const roles: string[] = []
after(async () => {
  for (const name of databases) await admin(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)
  for (const name of roles) await admin(`DROP ROLE IF EXISTS ${quoteIdent(name)}`)
})

async function newDatabase(owner?: string): Promise<string> {
  const name = uniqueName('mig')
  databases.push(name)
  await admin(`CREATE DATABASE ${quoteIdent(name)}${owner ? ` OWNER ${quoteIdent(owner)}` : ''}`)
  return name
}

async function newRole(name = uniqueName('web'), options = 'LOGIN'): Promise<string> {
  roles.push(name)
  await admin(`CREATE ROLE ${quoteIdent(name)} ${options} PASSWORD 'pw'`)
  return name
}

const appUser = await newRole(uniqueName('shop_web'))

async function connect(dbname: string, as?: string): Promise<Database> {
  const db = new Database({ connectionString: urlFor(dbname, as ? { name: as, password: 'pw' } : undefined), env: cleanEnv() })
  await db.connect()
  return db
}

/** Runs migrate on its own connection, as a separate program would. */
async function run(dbname: string, options: Partial<MigrateOptions> = {}, as?: string) {
  const db = await connect(dbname, as)
  try {
    return await migrate(db, { scripts: shop, app: 'shop', user: appUser, versionTable: 'configuration.version', ...options })
  } finally {
    await db.close()
  }
}

async function rows<T = Record<string, unknown>>(dbname: string, sql: string, params: unknown[] = []): Promise<T[]> {
  return admin<T>(sql, params, dbname)
}

async function versionOf(dbname: string): Promise<string | undefined> {
  const found = await rows<{ v: string }>(dbname, `SELECT version AS v FROM configuration`).catch(() => [])
  return found[0]?.v
}

/** Everything a schema comparison needs, read from the catalogs; OIDs and attnum gaps left out. */
async function schemaOf(dbname: string): Promise<Record<string, unknown[]>> {
  const q = (sql: string, params: unknown[] = []) => rows(dbname, sql, params)
  return {
    columns: await q(`SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                             pg_get_expr(d.adbin, d.adrelid) AS "default"
                        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S') AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY c.relname, a.attnum`),
    relations: await q(`SELECT relname, relkind, obj_description(c.oid, 'pg_class') AS comment FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY relname`),
    constraints: await q(`SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                           WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`),
    indexes: await q(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`),
    views: await q(`SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1`),
    functions: await q(`SELECT proname, pg_get_functiondef(oid) AS def FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1`),
    triggers: await q(`SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
    enums: await q(`SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels FROM pg_enum e
                     JOIN pg_type t ON t.oid = e.enumtypid GROUP BY 1 ORDER BY 1`),
    grants: await q(`SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 ORDER BY 1, 2`, [appUser]),
    version: await q(`SELECT version FROM configuration`).catch(() => []),
  }
}

/** A database at shop 0.1, made by the 0.1 release's own create script. */
async function shopAt01(): Promise<string> {
  const dbname = await newDatabase()
  const made = await run(dbname, { scripts: shopV01, target: '0.1' })
  assert.equal(made.action, 'create')
  return dbname
}

test('a fresh database is created at the current version', async () => {
  const dbname = await newDatabase()
  const progress: string[] = []
  const result = await run(dbname, { onProgress: (e) => progress.push(e.type === 'statement' ? `${e.file}:${e.line}` : e.type) })
  assert.equal(result.action, 'create')
  assert.deepEqual(progress.slice(0, 4), ['waiting', 'plan', 'create_shop.sql:2', 'create_shop.sql:7'])
  assert.equal(progress.length, 2 + result.statements)
  assert.equal(result.from, null)
  assert.equal(result.to, '1.0')
  assert.deepEqual(result.scripts, ['create_shop.sql'])
  assert.equal(result.dryRun, false)
  assert.equal(await versionOf(dbname), '1.0')
  const grants = await rows(dbname, `SELECT has_table_privilege($1, 'customers', 'SELECT') AS ok`, [appUser])
  assert.deepEqual(grants, [{ ok: true }])
  // Run again: nothing to do.
  const again = await run(dbname)
  assert.deepEqual([again.action, again.from, again.to, again.statements], ['none', '1.0', '1.0', 0])
})

test('an old database is upgraded through 13 scripts (0.9 → 0.10 included) to the same schema as a fresh create', async () => {
  const upgraded = await shopAt01()
  const notices: string[] = []
  const result = await run(upgraded, {
    onProgress: (e) => {
      if (e.type === 'notice') notices.push(e.message)
    },
  })
  assert.equal(result.action, 'upgrade')
  assert.equal(result.from, '0.1')
  assert.equal(result.to, '1.0')
  assert.equal(result.scripts.length, 13)
  assert.deepEqual(result.scripts.slice(7, 10), ['update_shop_0.8_to_0.9.sql', 'update_shop_0.9_to_0.10.sql', 'update_shop_0.10_to_0.11.sql'])
  assert.ok(
    notices.some((n) => n.startsWith('update_shop_0.12_to_0.13.sql line 1: dropped BEGIN')),
    notices.join('\n'),
  )
  assert.ok(
    notices.some((n) => n.startsWith('update_shop_0.3_to_0.4.sql line 2: dropped the trailing COMMIT')),
    notices.join('\n'),
  )

  const fresh = await newDatabase()
  await run(fresh)
  assert.deepEqual(await schemaOf(upgraded), await schemaOf(fresh))
})

test('a failing statement in the 5th script leaves the database at its old version, unchanged', async (t) => {
  const dbname = await shopAt01()
  const before = await schemaOf(dbname)
  const scripts = scratchDir()
  await cp(shop, scripts, { recursive: true })
  const fifth = join(scripts, 'update_shop_0.4_to_0.5.sql')
  const text = await readFile(fifth, 'utf8')
  const line = text.split('\n').length
  await writeFile(fifth, `${text}INSERT INTO orders (customer_id) VALUES (42);\n`)

  await assert.rejects(run(dbname, { scripts }), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
    assert.equal(error.code, 'MIGRATE_FAILED')
    assert.match(error.message, new RegExp(`^update_shop_0\\.4_to_0\\.5\\.sql line ${line}: .*foreign key.*; everything was rolled back, the database is still at 0\\.1$`))
    assert.equal(error.details?.sqlstate, '23503')
    return true
  })
  assert.equal(await versionOf(dbname), '0.1')
  assert.deepEqual(await schemaOf(dbname), before)
  t.diagnostic('fixed script: upgrade then succeeds')
  await writeFile(fifth, text)
  assert.equal((await run(dbname, { scripts })).to, '1.0')
})

test('the position of a syntax error is reported as the script line it is on', async () => {
  const dbname = await newDatabase()
  const scripts = scratchDir()
  await writeFile(join(scripts, 'create_x.sql'), 'CREATE TABLE a (id int);\nCREATE TABLE b (\n  id int,\n  oops oops oops\n);\n')
  await assert.rejects(run(dbname, { scripts, app: 'x', target: '1', versionTable: undefined }), {
    code: 'MIGRATE_FAILED',
    message: /^create_x\.sql line 4: syntax error at or near "oops"; everything was rolled back, the database still has no schema$/,
  })
  assert.deepEqual(await rows(dbname, `SELECT to_regclass('a') AS a`), [{ a: null }])
})

test('every lexical form of the splitter runs correctly on the server', async () => {
  const dbname = await newDatabase()
  const result = await run(dbname, { scripts: join(fixtures, 'lexical'), app: 'lexical', target: '1', versionTable: undefined })
  assert.equal(result.statements, 17)
  assert.deepEqual(await rows(dbname, 'SELECT id, s FROM t ORDER BY id'), [
    { id: 1, s: "it's; fine" },
    { id: 2, s: "back'slash; ok" },
    { id: 3, s: 'lower \\; e' },
    { id: 4, s: 'data;' },
    { id: 5, s: "dollar; 'quoted'" },
    { id: 6, s: ' $$ ; ' },
    { id: 7, s: 'param;' },
    { id: 8, s: 'a$b$c is an identifier' },
    { id: 9, s: 'line one and two' },
    { id: 10, s: "continued string's end" },
    { id: 11, s: 'begin atomic' },
  ])
  assert.deepEqual(await rows(dbname, `SELECT to_regclass('"semi;colon ""quoted"""') IS NOT NULL AS ok`), [{ ok: true }])
})

test('template values that try to inject SQL are quoted harmlessly', async () => {
  const dbname = await newDatabase()
  const evilUser = await newRole(`web"; DROP TABLE canary; --`)
  const table = `evil"; DROP TABLE canary; --`
  const note = `'); DROP TABLE canary; -- \\' $$`
  await run(dbname, { scripts: join(fixtures, 'evil'), app: 'evil', target: '1', user: evilUser, versionTable: undefined, variables: { table, note } })
  assert.deepEqual(await rows(dbname, `SELECT to_regclass('canary') IS NOT NULL AS canary`), [{ canary: true }])
  assert.deepEqual(await rows(dbname, `SELECT note, obj_description(to_regclass(quote_ident($1)), 'pg_class') AS comment FROM ${quoteIdent(table)}`, [table]), [{ note, comment: note }])
  assert.deepEqual(await rows(dbname, `SELECT has_table_privilege($1, quote_ident($2), 'SELECT') AS ok`, [evilUser, table]), [{ ok: true }])
})

// The last script alters the version table: runners waiting for the lock must hold no lock on it
// (they once read it first, and the upgrade deadlocked with them).
test('10 runners at once on an old database: exactly one upgrades, nine find it current', async () => {
  const dbname = await shopAt01()
  const results = await Promise.all(Array.from({ length: 10 }, () => run(dbname)))
  assert.deepEqual(results.map((r) => r.action).sort(), ['none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'upgrade'])
  assert.ok(results.every((r) => r.to === '1.0'))
  const fresh = await newDatabase()
  await run(fresh)
  assert.deepEqual(await schemaOf(dbname), await schemaOf(fresh))
})

test('10 runners at once on an empty database: exactly one creates and seeds it', async () => {
  const dbname = await newDatabase()
  const results = await Promise.all(Array.from({ length: 10 }, () => run(dbname, { seed: join(shop, 'seed.yaml') })))
  assert.deepEqual(results.map((r) => r.action).sort(), ['create', ...Array(9).fill('none')])
  assert.deepEqual(await rows(dbname, 'SELECT count(*)::int AS n FROM customers'), [{ n: 2 }])
})

test('a runner that waits longer than maxWaitMillis fails with a clear timeout and changes nothing', async () => {
  const dbname = await shopAt01()
  const holder = new pg.Client({ connectionString: urlFor(dbname) })
  await holder.connect()
  try {
    await holder.query('SELECT pg_advisory_lock($1::bigint)', [migrationLockKey('shop').toString()])
    const started = Date.now()
    await assert.rejects(run(dbname, { maxWaitMillis: 300 }), {
      code: 'MIGRATE_LOCK_TIMEOUT',
      message: /another migration of shop held the lock for more than 300 ms; nothing was changed/,
    })
    assert.ok(Date.now() - started >= 290)
    await assert.rejects(run(dbname, { maxWaitMillis: 0 }), { code: 'MIGRATE_LOCK_TIMEOUT' })
    assert.equal(await versionOf(dbname), '0.1')
  } finally {
    await holder.end()
  }
  assert.equal((await run(dbname, { maxWaitMillis: 0 })).action, 'upgrade')
})

test('a new database is seeded in foreign-key order; an upgrade is not seeded', async () => {
  const dbname = await newDatabase()
  const seen: string[] = []
  const result = await run(dbname, {
    seed: join(shop, 'seed.yaml'),
    onProgress: (e) => {
      if (e.type === 'seed') seen.push(e.table)
    },
  })
  assert.deepEqual(result.seeded, { customers: 2, products: 2, orders: 1, order_lines: 2 })
  assert.deepEqual(seen.slice(0, 2).sort(), ['customers', 'products'])
  assert.deepEqual(await rows(dbname, 'SELECT id, full_name, email FROM customers ORDER BY id'), [
    { id: 1, full_name: 'Ada Lovelace', email: 'ada@example.org' },
    { id: 2, full_name: 'Grace Hopper', email: null },
  ])
  assert.deepEqual(await rows(dbname, `SELECT status::text, order_total(id)::text AS total, placed_at = '2024-05-01 12:00Z' AS placed FROM orders`), [{ status: 'paid', total: '40.50', placed: true }])
  // Seeded explicit ids moved the sequences on, so the application's first insert does not collide.
  assert.deepEqual(await rows(dbname, `INSERT INTO products (name, price) VALUES ('Pot', 20) RETURNING id`), [{ id: 3 }])

  const old = await shopAt01()
  const upgraded = await run(old, { seed: join(shop, 'seed.yaml') })
  assert.deepEqual(upgraded.seeded, {})
  assert.deepEqual(await rows(old, 'SELECT count(*)::int AS n FROM customers'), [{ n: 0 }])
})

test('a seed naming a missing table rolls the whole creation back', async () => {
  const dbname = await newDatabase()
  await assert.rejects(run(dbname, { seed: { customers: [{ full_name: 'x' }], nosuch: [{ a: 1 }] } }), {
    code: 'MIGRATE_SEED',
    message: /seed table nosuch does not exist/,
  })
  assert.deepEqual(await rows(dbname, `SELECT to_regclass('customers') AS t`), [{ t: null }])
})

test('a dry run returns the exact SQL and changes nothing', async () => {
  const old = await shopAt01()
  const before = await schemaOf(old)
  const plan = await run(old, { dryRun: true })
  assert.deepEqual([plan.action, plan.dryRun, plan.from, plan.to, plan.scripts.length], ['upgrade', true, '0.1', '1.0', 13])
  assert.match(plan.sql, /-- update_shop_0\.9_to_0\.10\.sql \(to 0\.10\)\n-- line 2\nCREATE VIEW order_summaries AS/)
  assert.match(plan.sql, new RegExp(`GRANT SELECT ON order_summaries TO ${quoteIdent(appUser)};`))
  assert.deepEqual(await schemaOf(old), before)

  const empty = await newDatabase()
  const create = await run(empty, { dryRun: true, seed: join(shop, 'seed.yaml') })
  assert.equal(create.action, 'create')
  assert.match(create.sql, /-- then: insert the seed rows/)
  assert.deepEqual(await rows(empty, `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace`), [{ n: 0 }])
})

test('statements that cannot run in a transaction are refused before anything runs', async () => {
  const dbname = await shopAt01()
  const scripts = scratchDir()
  await cp(shop, scripts, { recursive: true })
  await writeFile(join(scripts, 'update_shop_0.13_to_1.0.sql'), 'SELECT 1;\n\nCREATE INDEX CONCURRENTLY orders_placed ON orders (placed_at);\n')
  await assert.rejects(run(dbname, { scripts }), {
    code: 'MIGRATE_NON_TRANSACTIONAL',
    message: /^nothing was run: a statement cannot run in the migration's transaction:\n {2}update_shop_0\.13_to_1\.0\.sql line 3: CREATE INDEX CONCURRENTLY/,
  })
  assert.equal(await versionOf(dbname), '0.1')
})

test('roles: the connected role must be a superuser or the owner; the app role must exist and not be a superuser', async () => {
  const owner = await newRole()
  const stranger = await newRole()
  const dbname = await newDatabase(owner)
  await assert.rejects(run(dbname, {}, stranger), {
    code: 'MIGRATE_ROLE',
    message: new RegExp(`connected as ${stranger}, but migrating needs a superuser or the owner of database ${dbname} \\(${owner}\\)`),
  })
  await assert.rejects(run(dbname, { adminMustBe: 'superuser' }, owner), { code: 'MIGRATE_ROLE', message: /needs a superuser;/ })
  await assert.rejects(run(dbname, { user: 'no_such_role' }), { code: 'MIGRATE_ROLE', message: /application role no_such_role does not exist/ })
  const superWeb = await newRole(uniqueName('superweb'), 'LOGIN SUPERUSER')
  await assert.rejects(run(dbname, { user: superWeb }), { code: 'MIGRATE_ROLE', message: new RegExp(`application role ${superWeb} is a superuser`) })
  assert.equal(await versionOf(dbname), undefined)
  // The database's owner, not a superuser, may migrate.
  assert.equal((await run(dbname, {}, owner)).action, 'create')
})

test('without versionTable the runner keeps the version in <app>_version; detectVersion dates older databases', async () => {
  const dbname = await newDatabase()
  const scripts = scratchDir()
  await writeFile(join(scripts, 'create_mini.sql'), 'CREATE TABLE items (id int, label text);')
  await writeFile(join(scripts, 'update_mini_1_to_2.sql'), 'ALTER TABLE items ADD label text;')
  const opts = { scripts, app: 'mini', versionTable: undefined }
  await admin('CREATE TABLE items (id int)', [], dbname) // a pre-pgcrew database at version 1
  const detectVersion = async (tx: { query: (sql: string) => Promise<{ rows: Array<{ found: boolean }> }> }) =>
    (await tx.query(`SELECT to_regclass('items') IS NOT NULL AS found`)).rows[0]!.found ? '1' : null
  const result = await run(dbname, { ...opts, detectVersion })
  assert.deepEqual([result.action, result.from, result.to], ['upgrade', '1', '2'])
  assert.deepEqual(await rows(dbname, 'SELECT version FROM mini_version'), [{ version: '2' }])
  assert.equal((await run(dbname, opts)).action, 'none')
})

test('a gap in the scripts and a newer database are refused with the versions named', async () => {
  const dbname = await shopAt01()
  const scripts = scratchDir()
  await cp(shop, scripts, { recursive: true })
  const { rm } = await import('node:fs/promises')
  await rm(join(scripts, 'update_shop_0.9_to_0.10.sql'))
  await assert.rejects(run(dbname, { scripts }), {
    code: 'MIGRATE_NO_PATH',
    message: 'no upgrade path from 0.1 to 1.0: the update scripts lead from 0.1 up to 0.9, and 1.0 is reached only from 0.10; add update_shop_0.9_to_0.10.sql',
  })
  await admin(`UPDATE configuration SET version = '1.1'`, [], dbname)
  await assert.rejects(run(dbname), { code: 'MIGRATE_DOWNGRADE', message: /database is at version 1\.1, newer than 1\.0: refusing to downgrade/ })
})

/** Runs `pgcrew initdb` with already-parsed flags (as main() hands them over) and captures its output. */
async function cli(values: Record<string, unknown>): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' }
  const sink = (key: 'stdout' | 'stderr') =>
    new Writable({
      write(chunk, _enc, done) {
        out[key] += String(chunk)
        done()
      },
    })
  const code = await initdb.run({ values, positionals: [] }, { stdout: sink('stdout'), stderr: sink('stderr'), env: cleanEnv(), isTTY: false })
  return { code, ...out }
}

test('pgcrew initdb: --dry-run prints the SQL, --yes migrates, --json reports what it did', async () => {
  const dbname = await newDatabase()
  const flags = { scripts: shop, app: 'shop', user: appUser, 'version-table': 'configuration.version', url: urlFor(dbname) }
  const dry = await cli({ ...flags, 'dry-run': true })
  assert.equal(dry.code, 0)
  assert.match(dry.stdout, /^-- create_shop\.sql \(to 1\.0\)\n-- line 2\nCREATE TABLE configuration/)
  assert.match(dry.stderr, new RegExp(`would create shop 1\\.0 in database ${dbname} \\(1 script, \\d+ statements\\)`))
  assert.equal(await versionOf(dbname), undefined)

  await assert.rejects(cli(flags), (e: unknown) => e instanceof UsageError && /pass --yes/.test(e.message))
  await assert.rejects(cli({ scripts: shop }), (e: unknown) => e instanceof UsageError && /--app NAME are required/.test(e.message))

  const done = await cli({ ...flags, yes: true, json: true, seed: join(shop, 'seed.yaml') })
  assert.equal(done.code, 0)
  const report = JSON.parse(done.stdout)
  assert.deepEqual([report.action, report.from, report.to, report.database, report.seeded.customers], ['create', null, '1.0', dbname, 2])
  assert.equal(report.sql, undefined)
  assert.equal(await versionOf(dbname), '1.0')

  const again = await cli({ ...flags, yes: true })
  assert.equal(again.stdout, `shop in database ${dbname} is at version 1.0; nothing to do\n`)
})

test('pgcrew initdb: a bad --var and --profile with --url are bad usage before any connection is tried', async () => {
  // Port 1 has no server: reaching the network would fail with a connection error, not UsageError.
  const flags = { scripts: shop, app: 'shop', url: 'postgres://nobody@127.0.0.1:1/nowhere', 'dry-run': true }
  await assert.rejects(cli({ ...flags, var: ['novalue'] }), (e: unknown) => e instanceof UsageError && /--var "novalue" must be NAME=VALUE/.test(e.message))
  await assert.rejects(cli({ ...flags, var: ['a=1', 'a=2'] }), (e: unknown) => e instanceof UsageError && /--var a is given twice/.test(e.message))
  await assert.rejects(cli({ ...flags, templates: 'python' }), (e: unknown) => e instanceof UsageError && /--templates "python" must be sql or format/.test(e.message))
  await assert.rejects(cli({ ...flags, profile: 'utah' }), (e: unknown) => e instanceof UsageError && /--profile and --url both say where to connect; pass one of them/.test(e.message))
})

const wheelhouse = join(fixtures, 'wheelhouse')
const wheelhouseV01 = join(fixtures, 'wheelhouse-0.1')
const wheelOptions = { app: 'wheelhouse', templates: 'format', versionTable: 'configuration.version' } as const

/** A catalog dump of the public schema: tables, columns, types, defaults, constraints, indexes, functions, grants, comments. */
async function catalogOf(dbname: string): Promise<Record<string, unknown[]>> {
  const q = (sql: string) => rows(dbname, sql)
  return {
    relations: await q(`SELECT c.relname, c.relkind, c.relacl::text AS acl, obj_description(c.oid, 'pg_class') AS comment
                          FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1`),
    columns: await q(`SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                             pg_get_expr(d.adbin, d.adrelid) AS "default", a.attacl::text AS acl
                        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                       WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY c.relname, a.attnum`),
    constraints: await q(`SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                           WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`),
    indexes: await q(`SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def, indisvalid FROM pg_index
                       WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace) ORDER BY 1`),
    functions: await q(`SELECT p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl
                          FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1`),
    version: await q(`SELECT version FROM configuration`),
  }
}

test("templates: 'format' runs str.format scripts (piwheels' style): a fresh create and an upgraded 0.1 end with the same catalog", async () => {
  const fresh = await newDatabase()
  const notices: string[] = []
  const created = await run(fresh, {
    ...wheelOptions,
    scripts: wheelhouse,
    onProgress: (e) => {
      if (e.type === 'notice') notices.push(e.message)
    },
  })
  assert.deepEqual([created.action, created.to], ['create', '0.3'])
  assert.ok(
    notices.some((n) => /^create_wheelhouse\.sql line \d+: dropped the trailing COMMIT/.test(n)),
    notices.join('\n'),
  )

  const old = await newDatabase()
  assert.equal((await run(old, { ...wheelOptions, scripts: wheelhouseV01, target: '0.1' })).action, 'create')
  const upgraded = await run(old, { ...wheelOptions, scripts: wheelhouse })
  assert.deepEqual([upgraded.action, upgraded.from, upgraded.to, upgraded.scripts.length], ['upgrade', '0.1', '0.3', 2])
  const catalog = await catalogOf(fresh)
  assert.deepEqual(await catalogOf(old), catalog)

  // '{{}}' became '{}' inside strings and inside the $sql$ bodies; {username} inside a string is its name.
  const column = (rel: string, name: string) =>
    catalog.columns!.find((c) => (c as { relname: string; attname: string }).relname === rel && (c as { attname: string }).attname === name) as { default: string }
  assert.equal(column('projects', 'labels').default, `'{}'::text[]`)
  assert.equal(column('projects', 'metadata').default, `'{}'::jsonb`)
  assert.equal((catalog.relations!.find((r) => (r as { relname: string }).relname === 'downloads') as { comment: string }).comment, `written only by log_download(), which ${appUser} may call`)
  for (const dbname of [fresh, old]) {
    await rows(dbname, `SELECT add_project('numpy')`)
    await rows(dbname, `INSERT INTO releases (project, release) VALUES ('numpy', '2.0')`)
    await rows(dbname, `SELECT log_download('numpy', NULL)`)
    assert.deepEqual(await rows(dbname, `SELECT get_project_data('numpy')::jsonb AS data, (SELECT details FROM downloads) AS details`), [
      { data: { project: 'numpy', releases: { '2.0': {} } }, details: { via: 'log_download' } },
    ])
    assert.deepEqual(await rows(dbname, `SELECT has_function_privilege($1, 'log_download(text, jsonb)', 'EXECUTE') AS ok`, [appUser]), [{ ok: true }])
  }

  // The same scripts in the default 'sql' dialect fail where piwheels' own create script does.
  await assert.rejects(run(await newDatabase(), { ...wheelOptions, templates: 'sql', scripts: wheelhouse }), {
    code: 'MIGRATE_FAILED',
    message: /^create_wheelhouse\.sql line \d+: .*(invalid input syntax for type json|malformed array literal)/,
  })
})

test('pgcrew initdb --templates format creates a schema from str.format scripts', async () => {
  const dbname = await newDatabase()
  const flags = { scripts: wheelhouse, app: 'wheelhouse', user: appUser, 'version-table': 'configuration.version', url: urlFor(dbname), yes: true }
  const done = await cli({ ...flags, templates: 'format' })
  assert.equal(done.code, 0)
  assert.match(done.stdout, new RegExp(`^created wheelhouse 0\\.3 in database ${dbname} \\(1 script, \\d+ statements\\)`))
  assert.deepEqual(await rows(dbname, `SELECT version FROM configuration`), [{ version: '0.3' }])
})

// A chain with a --! no-transaction step in the middle: 1→2 and 3→4 in transactions, 2→3 outside.
const lockCheck = `DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted) THEN
    RAISE EXCEPTION 'the migration lock is not held by this session';
  END IF;
END $$;\n`

async function chainAt1(): Promise<{ dbname: string; scripts: string }> {
  const dbname = await newDatabase()
  const base = scratchDir()
  await writeFile(join(base, 'create_chain.sql'), 'CREATE TABLE items (id int PRIMARY KEY, code text);\n')
  await run(dbname, { scripts: base, app: 'chain', target: '1', versionTable: undefined })
  const scripts = scratchDir()
  await writeFile(join(scripts, 'update_chain_1_to_2.sql'), `ALTER TABLE items ADD label text;\nINSERT INTO items SELECT g, 'c' || g, 'label ' || g FROM generate_series(1, 100) g;\n`)
  await writeFile(
    join(scripts, 'update_chain_2_to_3.sql'),
    `--! no-transaction\n-- built without blocking writers\nCREATE INDEX CONCURRENTLY items_label ON items (label);\n${lockCheck}VACUUM (ANALYZE) items;\n`,
  )
  await writeFile(join(scripts, 'update_chain_3_to_4.sql'), `ALTER INDEX items_label RENAME TO items_label_idx;\n${lockCheck}`)
  return { dbname, scripts }
}

const chainVersion = async (dbname: string) => (await rows<{ version: string }>(dbname, 'SELECT version FROM chain_version'))[0]?.version

test('--! no-transaction: the script runs outside the transaction, in order, under the lock; the dry run says so', async () => {
  const { dbname, scripts } = await chainAt1()
  const opts = { scripts, app: 'chain', versionTable: undefined }
  const plan = await run(dbname, { ...opts, dryRun: true })
  assert.deepEqual(plan.noTransaction, ['update_chain_2_to_3.sql'])
  assert.match(
    plan.sql,
    /-- then: COMMIT \(what ran so far stays done\)\n-- update_chain_2_to_3\.sql \(to 3\), OUTSIDE a transaction \(--! no-transaction\): each statement commits on its own\n-- line 3\nCREATE INDEX CONCURRENTLY/,
  )
  assert.match(plan.sql, /-- then: record version 3 in chain_version\.version \(a transaction of its own\), and BEGIN again\n\n-- update_chain_3_to_4\.sql/)
  const dry = await cli({ ...opts, url: urlFor(dbname), 'dry-run': true })
  assert.match(dry.stderr, /# upgrade chain: 1 → 4, 3 script\(s\), 7 statement\(s\); outside a transaction \(--! no-transaction\): update_chain_2_to_3\.sql/)
  assert.equal(await chainVersion(dbname), '1')

  const seen: string[] = []
  const result = await run(dbname, {
    ...opts,
    onProgress: (e) => {
      if (e.type === 'statement') seen.push(`${e.file}:${e.line}`)
    },
  })
  assert.deepEqual([result.action, result.from, result.to, result.noTransaction], ['upgrade', '1', '4', ['update_chain_2_to_3.sql']])
  assert.deepEqual(seen, [
    'update_chain_1_to_2.sql:1',
    'update_chain_1_to_2.sql:2',
    'update_chain_2_to_3.sql:3',
    'update_chain_2_to_3.sql:4',
    'update_chain_2_to_3.sql:9',
    'update_chain_3_to_4.sql:1',
    'update_chain_3_to_4.sql:2',
  ])
  assert.deepEqual(await rows(dbname, `SELECT indexrelid::regclass::text AS name, indisvalid FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary`), [
    { name: 'items_label_idx', indisvalid: true },
  ])
  assert.equal(await chainVersion(dbname), '4')
  // The session lock is given back when the migration ends, though its connection stays in the pool.
  const db = await connect(dbname)
  try {
    assert.equal((await migrate(db, opts)).action, 'none')
    assert.equal(db.connectionCount, 1)
    assert.deepEqual(await rows(dbname, 'SELECT pg_try_advisory_lock($1::bigint) AS ok, pg_advisory_unlock($1::bigint) AS released', [migrationLockKey('chain').toString()]), [
      { ok: true, released: true },
    ])
  } finally {
    await db.close()
  }
})

test('--! no-transaction: 4 runners at once on a chain with a step outside the transaction: one upgrades, three find it current', async () => {
  const { dbname, scripts } = await chainAt1()
  const results = await Promise.all(Array.from({ length: 4 }, () => run(dbname, { scripts, app: 'chain', versionTable: undefined })))
  assert.deepEqual(results.map((r) => r.action).sort(), ['none', 'none', 'none', 'upgrade'])
  assert.equal(await chainVersion(dbname), '4')
})

test('--! no-transaction: a failure there leaves the last recorded version and names what is half-done', async () => {
  const { dbname, scripts } = await chainAt1()
  const opts = { scripts, app: 'chain', versionTable: undefined }
  const step = join(scripts, 'update_chain_2_to_3.sql')
  // piwheels-style scripts record their own version first; labels are not unique, so the unique index fails.
  await writeFile(
    step,
    `--! no-transaction\nUPDATE chain_version SET version = '3';\nCREATE INDEX CONCURRENTLY items_code ON items (code);\nCREATE UNIQUE INDEX CONCURRENTLY items_label_key ON items ((left(label, 7)));\n`,
  )
  await assert.rejects(run(dbname, opts), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
    assert.equal(error.code, 'MIGRATE_FAILED')
    assert.match(
      error.message,
      /^update_chain_2_to_3\.sql line 4: could not create unique index "items_label_key"; update_chain_2_to_3\.sql runs outside a transaction \(--! no-transaction\), so the 2 statements before this one stay done; it left the INVALID index items_label_key: DROP INDEX CONCURRENTLY it before running again; the script had set the version to 3; pgcrew put back 2; the database is at 2, which the steps before it reached and committed/,
    )
    assert.deepEqual([error.details?.file, error.details?.line, error.details?.sqlstate], ['update_chain_2_to_3.sql', 4, '23505'])
    return true
  })
  assert.equal(await chainVersion(dbname), '2')
  assert.deepEqual(await rows(dbname, `SELECT count(label)::int AS n FROM items`), [{ n: 100 }])
  // A failed run gives the lock back even while its Database stays open (its pool keeps connections).
  const db = await connect(dbname)
  try {
    // Not re-runnable as written: items_code exists now.
    await assert.rejects(migrate(db, opts), { code: 'MIGRATE_FAILED', message: /^update_chain_2_to_3\.sql line 3: relation "items_code" already exists/ })
    assert.deepEqual(await rows(dbname, `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, [dbname]), [{ n: 0 }])
  } finally {
    await db.close()
  }

  // The script fixed (re-runnable, and the invalid index dropped); now the transactional step after it fails.
  await admin('DROP INDEX CONCURRENTLY items_label_key', [], dbname)
  await writeFile(step, `--! no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS items_code ON items (code);\nCREATE INDEX CONCURRENTLY items_label ON items (label);\n`)
  const last = join(scripts, 'update_chain_3_to_4.sql')
  const good = await readFile(last, 'utf8')
  await writeFile(last, `${good}INSERT INTO nosuch VALUES (1);\n`)
  await assert.rejects(run(dbname, opts), {
    code: 'MIGRATE_FAILED',
    message: /^update_chain_3_to_4\.sql line 7: relation "nosuch" does not exist; this transaction was rolled back: the database is at 3, which the steps before it reached and committed$/,
  })
  assert.equal(await chainVersion(dbname), '3')
  await writeFile(last, good)
  const done = await run(dbname, opts)
  assert.deepEqual([done.from, done.to, done.scripts], ['3', '4', ['update_chain_3_to_4.sql']])
})

test('migrate inside db.transaction() is refused: it runs transactions of its own', async () => {
  const dbname = await newDatabase()
  const db = await connect(dbname)
  try {
    await assert.rejects(
      db.transaction(() => migrate(db, { scripts: shop, app: 'shop', user: appUser, versionTable: 'configuration.version' })),
      {
        code: 'MIGRATE_IN_TRANSACTION',
        message: /migrate runs its own transactions .*; call it outside db\.transaction\(\)/,
      },
    )
  } finally {
    await db.close()
  }
  assert.equal(await versionOf(dbname), undefined)
})
