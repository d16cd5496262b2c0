// The parts of migrate() that decide what to run, tested without a database.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compareVersions, findUpgradePath } from '../../src/schema/migrate-versions.ts'
import type { UpdateScript } from '../../src/schema/migrate-versions.ts'
import { renderTemplate } from '../../src/schema/migrate-template.ts'
import { prepareScript } from '../../src/schema/migrate-script.ts'
import { readScriptFolder } from '../../src/schema/migrate-scripts.ts'
import { planMigration } from '../../src/schema/migrate-plan.ts'
import { splitStatements } from '../../src/schema/split-statements.ts'
import { loadSeed } from '../../src/schema/migrate-seed.ts'

async function folderWith(t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgcrew-plan-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text)
  return dir
}

const chain = (...versions: string[]): UpdateScript[] => versions.slice(1).map((to, i) => ({ from: versions[i]!, to, file: `update_app_${versions[i]}_to_${to}.sql` }))

test('versions compare naturally: 0.9 < 0.10 < 0.10.1 < 0.11 < 1.0', () => {
  const shuffled = ['0.10.1', '1.0', '0.9', '0.11', '0.10', '0.2', '10.0', '2.0']
  assert.deepEqual([...shuffled].sort(compareVersions), ['0.2', '0.9', '0.10', '0.10.1', '0.11', '1.0', '2.0', '10.0'])
  assert.equal(compareVersions('1.02', '1.2'), 0)
  assert.equal(compareVersions('1.0rc2', '1.0rc10'), -1)
  assert.equal(compareVersions('99999999999999999999.1', '99999999999999999998.9'), 1)
})

test('the upgrade path is the shortest chain, taking a direct script when one exists', () => {
  const updates = [...chain('0.1', '0.2', '0.3', '0.4', '0.5'), { from: '0.2', to: '0.4', file: 'update_app_0.2_to_0.4.sql' }]
  assert.deepEqual(
    findUpgradePath(updates, '0.1', '0.5').map((u) => u.file),
    ['update_app_0.1_to_0.2.sql', 'update_app_0.2_to_0.4.sql', 'update_app_0.4_to_0.5.sql'],
  )
  assert.deepEqual(
    findUpgradePath(updates, '0.3', '0.5').map((u) => `${u.from}>${u.to}`),
    ['0.3>0.4', '0.4>0.5'],
  )
  assert.deepEqual(findUpgradePath(updates, '0.5', '0.5'), [])
  assert.deepEqual(
    findUpgradePath(chain('0.8', '0.9', '0.10'), '0.8', '0.10').map((u) => u.to),
    ['0.9', '0.10'],
  )
})

test('a gap in the scripts is an error naming the missing step', () => {
  const updates = [...chain('0.1', '0.2', '0.3'), ...chain('0.5', '0.6')]
  assert.throws(() => findUpgradePath(updates, '0.1', '0.6', 'app'), {
    code: 'MIGRATE_NO_PATH',
    message: 'no upgrade path from 0.1 to 0.6: the update scripts lead from 0.1 up to 0.3, and 0.6 is reached only from 0.5; add update_app_0.3_to_0.5.sql',
  })
  assert.throws(() => findUpgradePath(updates, '0.4', '0.6', 'app'), {
    code: 'MIGRATE_NO_PATH',
    message: 'no upgrade path from 0.4 to 0.6: no update script starts at 0.4, and 0.6 is reached only from 0.5; add update_app_0.4_to_0.5.sql',
  })
})

test('a database newer than the scripts is never downgraded', () => {
  assert.throws(() => findUpgradePath(chain('0.9', '0.10'), '0.11', '0.10'), {
    code: 'MIGRATE_DOWNGRADE',
    message: /database is at version 0\.11, newer than 0\.10: refusing to downgrade/,
  })
})

test('a scripts folder yields the create script, the updates and the latest version', async (t) => {
  const dir = await folderWith(t, {
    'create_shop.sql': 'CREATE TABLE a (x int);',
    'update_shop_0.9_to_0.10.sql': '',
    'update_shop_0.10_to_0.10.1.sql': '',
    'update_shop_admin_1_to_2.sql': '', // another app whose name starts with shop_
    'create_other.sql': '',
    'README.md': '',
  })
  const folder = await readScriptFolder(dir, 'shop')
  assert.equal(folder.create, 'create_shop.sql')
  assert.deepEqual(
    folder.updates.map((u) => [u.from, u.to]),
    [
      ['0.9', '0.10'],
      ['0.10', '0.10.1'],
    ],
  )
  assert.equal(folder.latest, '0.10.1')
})

test('misnamed and backwards update scripts are errors, not silently skipped', async (t) => {
  const misnamed = await folderWith(t, { 'update_shop_0.1-0.2.sql': '' })
  await assert.rejects(readScriptFolder(misnamed, 'shop'), { code: 'MIGRATE_BAD_SCRIPT_NAME', message: /update_shop_0\.1-0\.2\.sql looks like an update script for shop/ })
  const backwards = await folderWith(t, { 'update_shop_0.10_to_0.9.sql': '' })
  await assert.rejects(readScriptFolder(backwards, 'shop'), { code: 'MIGRATE_BAD_SCRIPT_NAME', message: /goes from 0\.10 to 0\.9, which is not an upgrade/ })
  const empty = await folderWith(t, { 'create_other.sql': '' })
  await assert.rejects(readScriptFolder(empty, 'shop'), { code: 'MIGRATE_NO_SCRIPTS', message: /expected create_shop\.sql/ })
})

test('templates: {name} is a quoted identifier, {name!literal} a quoted literal, {{ }} braces', () => {
  const vars = { username: 'web', dbname: 'Shop DB', note: "it's" }
  assert.equal(renderTemplate('GRANT SELECT ON t TO {username}; COMMENT ON DATABASE {dbname} IS {note!literal}', vars), `GRANT SELECT ON t TO "web"; COMMENT ON DATABASE "Shop DB" IS 'it''s'`)
  assert.equal(renderTemplate('SELECT {{x}} AS {username!ident}', vars), 'SELECT {x} AS "web"')
})

test('templates leave strings, comments and dollar-quoted bodies alone', () => {
  const sql = `SELECT '{"a": {username}}'::jsonb, $$ {username} $$ /* {username} */ -- {nope`
  assert.equal(renderTemplate(sql, { username: 'web' }), sql)
})

test('template values that try to inject SQL stay inside their quotes', () => {
  const evil = { who: 'x"; DROP TABLE users; --', what: "'); DROP TABLE users; --", slash: "\\'; DROP TABLE users; --" }
  const rendered = renderTemplate('GRANT SELECT ON t TO {who}; SELECT {what!literal}, {slash!literal}', evil)
  assert.equal(rendered, `GRANT SELECT ON t TO "x""; DROP TABLE users; --"; SELECT '''); DROP TABLE users; --', E'\\\\''; DROP TABLE users; --'`)
  // Lexically the values are single tokens: the only statement break is the one in the template.
  assert.equal(splitStatements(rendered).length, 2)
})

test('template mistakes are errors with file and line', () => {
  const at = { file: 'create_app.sql', line: 10 }
  assert.throws(() => renderTemplate('SELECT 1,\n {usrname}', { username: 'a' }, at), {
    code: 'MIGRATE_TEMPLATE',
    message: 'create_app.sql line 11: no value for {usrname} (known: username); pass it in variables',
  })
  assert.throws(() => renderTemplate('GRANT ALL ON t TO {username}', {}, at), { message: /no value for \{username\} \(known: none\); pass user \(--user\)/ })
  assert.throws(() => renderTemplate('SELECT {', {}, at), { code: 'MIGRATE_TEMPLATE', message: /line 10: a \{ that does not start/ })
  assert.throws(() => renderTemplate('SELECT }', {}, at), { code: 'MIGRATE_TEMPLATE', message: /a lone \}/ })
  assert.throws(() => renderTemplate('SELECT {a!raw}', { a: 'x' }, at), { code: 'MIGRATE_TEMPLATE', message: /unknown placeholder form \{a!raw\}/ })
  assert.throws(() => renderTemplate('SELECT {n}', { n: 5 }, at), { code: 'MIGRATE_TEMPLATE', message: /use \{n!literal\}/ })
})

test('format templates: braces count inside strings, identifiers, comments and $$ bodies too', () => {
  const vars = { username: 'web' }
  const render = (sql: string) => renderTemplate(sql, vars, {}, 'format')
  assert.equal(render(`SELECT COALESCE(json_agg(d), '{{}}') FROM t`), `SELECT COALESCE(json_agg(d), '{}') FROM t`)
  assert.equal(render(`GRANT SELECT ON t TO {username}`), `GRANT SELECT ON t TO "web"`)
  assert.equal(render(`COMMENT ON TABLE t IS 'owned by {username}'`), `COMMENT ON TABLE t IS 'owned by web'`)
  assert.equal(render(`SELECT 1 AS "{username}_n" -- {{x}} by {username}`), `SELECT 1 AS "web_n" -- {x} by web`)
  // A $$ body is read as SQL: code gets an identifier, a string inside it gets text.
  assert.equal(
    render(`CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $sql$ BEGIN RAISE NOTICE '{{}} {username}'; GRANT SELECT ON t TO {username}; END $sql$`),
    `CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $sql$ BEGIN RAISE NOTICE '{} web'; GRANT SELECT ON t TO "web"; END $sql$`,
  )
  // A body that is not SQL (an unbalanced quote in plain text) still has its braces unescaped.
  assert.equal(render(`COMMENT ON TABLE t IS $$it's {{x}}$$`), `COMMENT ON TABLE t IS $$it's {x}$$`)
})

test('format templates: a value can never end the quote it sits in', () => {
  const evil = { v: `'); DROP TABLE users; -- \\' "x" $sql$ */\n` }
  const render = (sql: string) => renderTemplate(sql, evil, {}, 'format')
  const literal = render(`SELECT 'a{v}b'`)
  assert.equal(literal, `SELECT E'a''); DROP TABLE users; -- \\\\'' "x" $sql$ */\nb'`)
  assert.equal(render(`SELECT 1 AS "{v}"`), `SELECT 1 AS "'); DROP TABLE users; -- \\' ""x"" $sql$ */\n"`)
  for (const sql of [literal, render(`SELECT 1 AS "{v}"`), render(`SELECT $$ '{v}' $$`)]) assert.equal(splitStatements(sql).length, 1, sql)
  const at = { file: 'update_app_1_to_2.sql', line: 7 }
  assert.throws(() => renderTemplate(`SELECT $sql$ SELECT '{v}' $sql$`, evil, at, 'format'), {
    code: 'MIGRATE_TEMPLATE',
    message: /^update_app_1_to_2\.sql line 7: a template value would end the \$sql\$ quote/,
  })
  assert.throws(() => renderTemplate(`SELECT 1 -- {v}`, evil, at, 'format'), { message: /line 7: the value of \{v\} would end the comment/ })
})

test('format templates: stray braces, unknown names and values in E strings are errors with file and line', () => {
  const at = { file: 'create_app.sql', line: 10 }
  const render =
    (sql: string, vars = {}) =>
    () =>
      renderTemplate(sql, vars, at, 'format')
  assert.throws(render(`SELECT 1,\n '{'`), { code: 'MIGRATE_TEMPLATE', message: /^create_app\.sql line 11: a lone \{ in a string; .* write \{\{ for a literal one$/ })
  assert.throws(render(`SELECT $$\n\n SELECT '}' $$`), { code: 'MIGRATE_TEMPLATE', message: /^create_app\.sql line 12: a lone \} in a string/ })
  assert.throws(render(`SELECT '{nosuch}'`, { username: 'web' }), { message: /^create_app\.sql line 10: no value for \{nosuch\} \(known: username\)/ })
  assert.throws(render(`SELECT E'{username}'`, { username: 'web' }), { message: /\{username\} in an E'' or U&'' string: pgcrew cannot tell how to quote/ })
  assert.throws(render(`SELECT '{username!literal}'`, { username: 'web' }), { message: /write \{username\} without !ident or !literal/ })
  assert.throws(render(`SELECT '{ username }'`, { username: 'web' }), { message: /\{ username \} in a string is not a \{name\} placeholder/ })
})

test('a leading BEGIN and a trailing COMMIT are dropped with a notice', () => {
  const script = prepareScript('-- psql style\nBEGIN;\nCREATE TABLE a (x int);\nCOMMIT;\n', 'update_app_1_to_2.sql', {})
  assert.deepEqual(
    script.statements.map((s) => s.sql),
    ['CREATE TABLE a (x int)'],
  )
  assert.deepEqual(script.problems, [])
  assert.equal(script.notices.length, 2)
  assert.match(script.notices[0]!, /^update_app_1_to_2\.sql line 2: dropped BEGIN/)
  assert.match(script.notices[1]!, /^update_app_1_to_2\.sql line 4: dropped the trailing COMMIT/)
  // piwheels' scripts end in a bare COMMIT with no BEGIN.
  assert.deepEqual(prepareScript('CREATE TABLE a (x int);\nCOMMIT;', 'f.sql', {}).statements.length, 1)
})

test('transaction control anywhere else is a problem reported with file and line', () => {
  const script = prepareScript('CREATE TABLE a (x int);\nCOMMIT;\nBEGIN;\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nROLLBACK;\nCREATE TABLE b (x int);', 'f.sql', {})
  assert.deepEqual(
    script.problems.map((p) => [p.code, p.line]),
    [
      ['MIGRATE_TRANSACTION_CONTROL', 2],
      ['MIGRATE_TRANSACTION_CONTROL', 3],
      ['MIGRATE_TRANSACTION_CONTROL', 6],
    ],
  )
})

test('statements PostgreSQL refuses inside a transaction are found before anything runs', () => {
  const lines = [
    'CREATE INDEX CONCURRENTLY i ON t (x)',
    'create unique index concurrently i2 on t (x)',
    'DROP INDEX CONCURRENTLY i',
    'VACUUM ANALYZE t',
    'CREATE DATABASE other',
    'DROP DATABASE other',
    'ALTER SYSTEM SET work_mem = 1',
    'REINDEX TABLE CONCURRENTLY t',
    'REINDEX (CONCURRENTLY) TABLE t',
    'REINDEX DATABASE d',
    "CREATE TABLESPACE s LOCATION '/x'",
    'DROP TABLESPACE s',
    'ALTER DATABASE "d" SET TABLESPACE s',
    'ALTER TABLE p DETACH PARTITION c CONCURRENTLY',
    "CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p",
    'DISCARD ALL',
    'CLUSTER',
  ]
  const script = prepareScript(lines.join(';\n') + ';\nCREATE INDEX i3 ON t (x); REINDEX TABLE t; ALTER DATABASE d SET work_mem = 1;', 'update_app_1_to_2.sql', {})
  assert.deepEqual(
    script.problems.map((p) => p.line),
    lines.map((_, i) => i + 1),
  )
  assert.ok(script.problems.every((p) => p.code === 'MIGRATE_NON_TRANSACTIONAL'))
  assert.match(script.problems[0]!.message, /^update_app_1_to_2\.sql line 1: CREATE INDEX CONCURRENTLY cannot run inside a transaction/)
  assert.equal(script.statements.length, 3)
})

test('a plan reports every problem of every script on the way, before running anything', async (t) => {
  const dir = await folderWith(t, {
    'create_app.sql': 'CREATE TABLE t (x int);',
    'update_app_1_to_2.sql': 'CREATE TABLE u (x int);\nCREATE INDEX CONCURRENTLY ON t (x);',
    'update_app_2_to_3.sql': 'BEGIN;\nVACUUM t;\nCOMMIT;',
  })
  const folder = await readScriptFolder(dir, 'app')
  await assert.rejects(planMigration(folder, '1', { variables: {} }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'MIGRATE_NON_TRANSACTIONAL')
    assert.match(error.message, /^nothing was run: 2 statements cannot run/)
    assert.match(error.message, /update_app_1_to_2\.sql line 2: CREATE INDEX CONCURRENTLY/)
    assert.match(error.message, /update_app_2_to_3\.sql line 2: VACUUM/)
    return true
  })
})

test('--! no-transaction: such a script may hold CONCURRENTLY and VACUUM, but no transaction control', () => {
  const ok = prepareScript('--! no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);\nVACUUM t;\n', 'update_app_1_to_2.sql', {})
  assert.deepEqual([ok.transaction, ok.problems, ok.statements.map((s) => s.line)], [false, [], [2, 3]])
  assert.equal(prepareScript('CREATE TABLE t (x int);', 'update_app_1_to_2.sql', {}).transaction, true)
  const control = prepareScript('--! no-transaction\nBEGIN;\nVACUUM t;\nCOMMIT;\n', 'update_app_1_to_2.sql', {})
  assert.deepEqual(
    control.problems.map((p) => [p.code, p.line]),
    [
      ['MIGRATE_TRANSACTION_CONTROL', 2],
      ['MIGRATE_TRANSACTION_CONTROL', 4],
    ],
  )
  assert.match(control.problems[0]!.message, /^update_app_1_to_2\.sql line 2: BEGIN — under --! no-transaction each statement runs and commits on its own, so remove it$/)
  const typo = prepareScript('--! no-transactions\nVACUUM t;', 'update_app_1_to_2.sql', {})
  assert.deepEqual(
    typo.problems.map((p) => p.code),
    ['MIGRATE_BAD_HEADER', 'MIGRATE_NON_TRANSACTIONAL'],
  )
  assert.match(typo.problems[0]!.message, /line 1: unknown header "--! no-transactions"; the one pgcrew knows is --! no-transaction/)
})

test('--! no-transaction is refused on a create script, which must be all or nothing', async (t) => {
  const dir = await folderWith(t, { 'create_app.sql': '--! no-transaction\nCREATE TABLE t (x int);', 'update_app_1_to_2.sql': '' })
  await assert.rejects(planMigration(await readScriptFolder(dir, 'app'), null, { variables: {} }), {
    code: 'MIGRATE_NON_TRANSACTIONAL',
    message: /^nothing was run: a statement does not fit the way its script runs:\n {2}create_app\.sql line 1: --! no-transaction is for update scripts; a create must be all or nothing/,
  })
})

test('a plan creates a missing schema at the latest version, upgrades an old one, leaves a current one', async (t) => {
  const dir = await folderWith(t, {
    'create_app.sql': 'CREATE TABLE t (x int, y int);\nGRANT SELECT ON t TO {username};',
    'update_app_1_to_2.sql': 'ALTER TABLE t ADD y int;',
  })
  const folder = await readScriptFolder(dir, 'app')
  const create = await planMigration(folder, null, { variables: { username: 'web' } })
  assert.equal(create.action, 'create')
  assert.equal(create.to, '2')
  assert.deepEqual(
    create.scripts.map((s) => [s.file, s.version]),
    [['create_app.sql', '2']],
  )
  assert.equal(create.scripts[0]!.statements[1]!.sql, 'GRANT SELECT ON t TO "web"')
  const upgrade = await planMigration(folder, '1', { variables: {} })
  assert.equal(upgrade.action, 'upgrade')
  assert.deepEqual(
    upgrade.scripts.map((s) => s.file),
    ['update_app_1_to_2.sql'],
  )
  assert.equal((await planMigration(folder, '2', { variables: {} })).action, 'none')
})

test('seed files may be YAML or JSON; a wrong shape is a clear error', async (t) => {
  const dir = await folderWith(t, {
    'seed.json': '{"customers": [{"id": 1, "name": "Ada"}], "empty": []}',
    'seed.yaml': 'customers:\n  - { id: 1, joined: 2024-05-01, tags: [a, b] }\n',
    'flat.yaml': 'customers: Ada\n',
    'broken.yaml': 'customers: [\n',
  })
  assert.deepEqual(await loadSeed(join(dir, 'seed.json')), { customers: [{ id: 1, name: 'Ada' }], empty: [] })
  // Dates stay strings: PostgreSQL converts them by the column's type.
  assert.deepEqual(await loadSeed(join(dir, 'seed.yaml')), { customers: [{ id: 1, joined: '2024-05-01', tags: ['a', 'b'] }] })
  await assert.rejects(loadSeed(join(dir, 'flat.yaml')), { code: 'MIGRATE_SEED', message: /flat\.yaml: customers must hold a list of rows/ })
  await assert.rejects(loadSeed(join(dir, 'broken.yaml')), { code: 'MIGRATE_SEED', message: /broken\.yaml is not valid YAML or JSON/ })
  await assert.rejects(loadSeed(join(dir, 'missing.yaml')), { code: 'MIGRATE_SEED', message: /cannot read the seed file/ })
})
