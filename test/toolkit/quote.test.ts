import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PgcrewError } from '../../src/errors/pgcrew-error.ts'
import { isSqlFragment, qname, quoteIdent, quoteLiteral, sql } from '../../src/toolkit/quote.ts'

describe('quoteIdent / qname', () => {
  it('always quotes, keeping case and doubling embedded quotes', () => {
    assert.equal(quoteIdent('users'), '"users"')
    assert.equal(quoteIdent('MyTable'), '"MyTable"')
    assert.equal(quoteIdent('we"ird'), '"we""ird"')
    assert.equal(qname('audit', 'Events'), '"audit"."Events"')
    assert.equal(qname('a.b'), '"a.b"')
  })

  it('refuses names PostgreSQL cannot hold', () => {
    assert.throws(() => quoteIdent(''), PgcrewError)
    assert.throws(() => quoteIdent('a\0b'), /NUL/)
    assert.throws(() => qname(), /at least one/)
  })
})

describe('quoteLiteral', () => {
  it('renders strings, with E-syntax when a backslash is present', () => {
    assert.equal(quoteLiteral("it's"), "'it''s'")
    assert.equal(quoteLiteral('C:\\temp'), "E'C:\\\\temp'")
    assert.equal(quoteLiteral(null), 'NULL')
    assert.equal(quoteLiteral(undefined), 'NULL')
    assert.equal(quoteLiteral(true), 'true')
    assert.equal(quoteLiteral(12n), "'12'")
    assert.equal(quoteLiteral(1.5), "'1.5'")
    assert.equal(quoteLiteral(Number.NaN), "'NaN'")
    assert.equal(quoteLiteral(-Infinity), "'-Infinity'")
  })
})

describe('sql tagged template', () => {
  it('turns values into numbered parameters and splices fragments', () => {
    const id = 7
    const cond = sql`name = ${'bob'}`
    const q = sql`select * from ${sql.ident('audit', 'Events')} where id = ${id} and ${cond} and x in (${sql.join([1, 2])})`
    assert.equal(q.text, 'select * from "audit"."Events" where id = $1 and name = $2 and x in ($3, $4)')
    assert.deepEqual(q.values, [7, 'bob', 1, 2])
    assert.ok(isSqlFragment(q))
  })

  it('compiles with an offset, and raw/literal insert text', () => {
    const q = sql`set work_mem = ${sql.literal('64MB')}; select ${sql.raw('now()')}, ${1}`
    assert.deepEqual(q.compile(2), { text: "set work_mem = '64MB'; select now(), $3", values: [1] })
    assert.equal(sql`${sql.join([sql`a`, sql`b`], sql` and `)}`.text, 'a and b')
  })

  it('never shows parameter values when printed or serialised', () => {
    const q = sql`alter role app password ${'s3cret'}`
    assert.doesNotMatch(String(q), /s3cret/)
    assert.doesNotMatch(JSON.stringify(q), /s3cret/)
    assert.deepEqual(JSON.parse(JSON.stringify(q)), { text: 'alter role app password $1', parameterCount: 1 })
  })
})
