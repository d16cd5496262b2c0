import { test } from 'node:test'
import assert from 'node:assert/strict'
import { splitStatements } from '../../src/schema/split-statements.ts'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'

const sqlOf = (script: string): string[] => splitStatements(script).map((s) => s.sql)

test('splits on semicolons and reports the line each statement starts on', () => {
  const script = 'CREATE TABLE a (id int);\n\nINSERT INTO a VALUES (1);\n  SELECT 1\n  FROM a;\nSELECT 2'
  assert.deepEqual(splitStatements(script), [
    { sql: 'CREATE TABLE a (id int)', line: 1 },
    { sql: 'INSERT INTO a VALUES (1)', line: 3 },
    { sql: 'SELECT 1\n  FROM a', line: 4 },
    { sql: 'SELECT 2', line: 6 },
  ])
})

test('drops empty statements and statements that are only comments', () => {
  assert.deepEqual(splitStatements(';;  ;\n-- just a note;\n/* and; another */ ;\n'), [])
  assert.deepEqual(sqlOf('SELECT 1;;;SELECT 2;'), ['SELECT 1', 'SELECT 2'])
})

test('leading comments are dropped and the line points at the statement itself', () => {
  assert.deepEqual(splitStatements('-- create the table\n/* really */\nCREATE TABLE t (x int);'), [{ sql: 'CREATE TABLE t (x int)', line: 3 }])
})

test('-- comments keep their newline, so lines are never glued together (piwheels)', () => {
  // Gluing "SELECT a -- note" and "FROM t" without the newline would comment out FROM t.
  assert.deepEqual(sqlOf('SELECT a -- note; not a split\nFROM t;'), ['SELECT a -- note; not a split\nFROM t'])
  assert.deepEqual(sqlOf('SELECT 1--x\n+ 2;'), ['SELECT 1--x\n+ 2'])
})

test('nested /* */ comments hide semicolons, quotes and closing markers (piwheels, py-postgresql)', () => {
  const script = "/* outer /* inner; 'quote */ still comment; $$ */ SELECT 1; SELECT /* x; */ 2;"
  assert.deepEqual(splitStatements(script), [
    { sql: 'SELECT 1', line: 1 },
    { sql: 'SELECT /* x; */ 2', line: 1 },
  ])
})

test("'literals' with '' escapes hide semicolons", () => {
  assert.deepEqual(sqlOf("SELECT 'it''s; fine', ''';'; SELECT 2"), ["SELECT 'it''s; fine', ''';'", 'SELECT 2'])
})

test("E'' escape strings treat \\' as an escaped quote, in upper and lower case (piwheels, py-postgresql)", () => {
  assert.deepEqual(sqlOf("SELECT E'it\\'s; fine'; SELECT 2"), ["SELECT E'it\\'s; fine'", 'SELECT 2'])
  assert.deepEqual(sqlOf("SELECT e'\\'; still the string'; SELECT 2"), ["SELECT e'\\'; still the string'", 'SELECT 2'])
  assert.deepEqual(sqlOf("SELECT e'\\\\'; SELECT 2"), ["SELECT e'\\\\'", 'SELECT 2'])
  // A word that merely ends in e is not an E prefix: date'…' is a plain string where \ is literal.
  assert.deepEqual(sqlOf("SELECT date'2020-01-01\\'; SELECT 2"), ["SELECT date'2020-01-01\\'", 'SELECT 2'])
})

test("an E'' string continued on the next line stays an escape string", () => {
  assert.deepEqual(sqlOf("SELECT E'a'\n  'b\\'; c'; SELECT 2"), ["SELECT E'a'\n  'b\\'; c'", 'SELECT 2'])
})

test('U&\'…\' strings and U&"…" identifiers are plain quotes (backslash is not an escape there)', () => {
  assert.deepEqual(sqlOf("SELECT U&'d\\0061t\\+000061;' AS x; SELECT 2"), ["SELECT U&'d\\0061t\\+000061;' AS x", 'SELECT 2'])
  assert.deepEqual(sqlOf("SELECT u&'\\'; SELECT 2"), ["SELECT u&'\\'", 'SELECT 2'])
  assert.deepEqual(sqlOf('SELECT 1 AS U&"a;\\0062"; SELECT 2'), ['SELECT 1 AS U&"a;\\0062"', 'SELECT 2'])
})

test('"quoted identifiers" with "" escapes hide semicolons and quotes', () => {
  assert.deepEqual(sqlOf('SELECT 1 AS "a "" ; b", 2 AS "it\'s"; SELECT 2'), ['SELECT 1 AS "a "" ; b", 2 AS "it\'s"', 'SELECT 2'])
})

test('$$ and $tag$ dollar quotes hide semicolons, quotes and other tags', () => {
  const fn = [
    'CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $body$',
    'BEGIN',
    "  RETURN 'it''s'; -- $$ is not the end here",
    '  PERFORM $x$ ; $x$;',
    'END;',
    '$body$;',
    "DO $$ BEGIN RAISE NOTICE '%', 1; END $$;",
    'SELECT $ÄÖ$;$ÄÖ$;',
  ].join('\n')
  const statements = splitStatements(fn)
  assert.equal(statements.length, 3)
  assert.equal(statements[0]!.line, 1)
  assert.ok(statements[0]!.sql.endsWith('END;\n$body$'))
  assert.deepEqual(statements.slice(1), [
    { sql: "DO $$ BEGIN RAISE NOTICE '%', 1; END $$", line: 7 },
    { sql: 'SELECT $ÄÖ$;$ÄÖ$', line: 8 },
  ])
})

test('$1 parameters are not dollar quotes (piwheels)', () => {
  assert.deepEqual(sqlOf('PREPARE p(int, int) AS SELECT $1 + $2; EXECUTE p(1, 2); SELECT 3'), ['PREPARE p(int, int) AS SELECT $1 + $2', 'EXECUTE p(1, 2)', 'SELECT 3'])
  assert.deepEqual(sqlOf('CREATE FUNCTION g(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + 1; $$; SELECT 2'), ['CREATE FUNCTION g(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + 1; $$', 'SELECT 2'])
})

test('identifiers containing $ (a$b$c) are not dollar quotes', () => {
  assert.deepEqual(sqlOf('SELECT a$b$c, x$ FROM t$1; SELECT 2'), ['SELECT a$b$c, x$ FROM t$1', 'SELECT 2'])
})

test('semicolons inside parentheses do not split (CREATE RULE … DO (…; …))', () => {
  const rule = 'CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2))'
  assert.deepEqual(sqlOf(`${rule}; SELECT 2`), [rule, 'SELECT 2'])
})

test('BEGIN ATOMIC … END function bodies stay one statement, as in psql', () => {
  const fn = 'CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 2 END;\nEND'
  assert.deepEqual(splitStatements(`${fn};\nBEGIN;\nSELECT 3;\nEND;`), [
    { sql: fn, line: 1 },
    { sql: 'BEGIN', line: 6 },
    { sql: 'SELECT 3', line: 7 },
    { sql: 'END', line: 8 },
  ])
})

test('CRLF line endings count lines correctly', () => {
  assert.deepEqual(splitStatements('SELECT 1;\r\n\r\nSELECT 2;\r\n'), [
    { sql: 'SELECT 1', line: 1 },
    { sql: 'SELECT 2', line: 3 },
  ])
})

const unterminatedCases: Array<[string, string, number]> = [
  ["SELECT 1;\nSELECT 'oops;\nSELECT 2;", 'quoted string', 2],
  ["SELECT 1;\n\nSELECT E'it\\';", "E'' string", 3],
  ["SELECT e'\\';", "E'' string", 1],
  ['SELECT 1;\nSELECT "oops', 'quoted identifier', 2],
  ['SELECT 1;\nCREATE FUNCTION f() AS $fn$\nSELECT 1;\n$fx$;', 'dollar-quoted string $fn$', 2],
  ['SELECT 1; /* outer /* inner */ still open\n', '/* comment', 1],
  ["SELECT U&'never", "U&' string", 1],
]
for (const [script, what, line] of unterminatedCases) {
  test(`unterminated ${what} is an error naming the file and line`, () => {
    assert.throws(
      () => splitStatements(script, { file: 'update_app_1_to_2.sql' }),
      (error: unknown) => {
        assert.ok(error instanceof PgcrewError)
        assert.equal(error.code, 'SPLIT_UNTERMINATED')
        assert.match(error.message, new RegExp(`unterminated ${what.replace(/[$*'/]/g, '\\$&')} starting at update_app_1_to_2\\.sql line ${line}`))
        assert.equal(error.details.line, line)
        assert.equal(error.details.file, 'update_app_1_to_2.sql')
        return true
      },
    )
  })
}

test('a -- comment at the end of the file ends cleanly; trailing comments are left out', () => {
  assert.deepEqual(sqlOf('SELECT 1 -- the end'), ['SELECT 1'])
  assert.deepEqual(sqlOf('SELECT 1 /* a */ + 1 -- b\n;'), ['SELECT 1 /* a */ + 1'])
})

test('psql meta-commands are refused with their line', () => {
  assert.throws(() => splitStatements('SELECT 1;\n\\connect other\nSELECT 2;', { file: 'create_app.sql' }), {
    code: 'SPLIT_PSQL_META',
    message: /psql meta-command \\connect at create_app\.sql line 2/,
  })
  // …but a backslash inside a string is just text.
  assert.deepEqual(sqlOf("SELECT '\\connect'"), ["SELECT '\\connect'"])
})
