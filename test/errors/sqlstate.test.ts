import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { SQLSTATES, SQLSTATE_CLASSES } from '../../src/errors/sqlstate.ts'

describe('generated SQLSTATE table', () => {
  it('says it is generated and by what', () => {
    const head = readFileSync(new URL('../../src/errors/sqlstate.ts', import.meta.url), 'utf8').split('\n', 2)[0]
    assert.match(head ?? '', /GENERATED .* node scripts\/gen-sqlstate\.mjs/)
  })

  it('holds the codes a client meets, with their condition names', () => {
    assert.deepEqual(SQLSTATES['23505'], { name: 'unique_violation', kind: 'error' })
    assert.equal(SQLSTATES['40P01']?.name, 'deadlock_detected')
    assert.equal(SQLSTATES['57P01']?.name, 'admin_shutdown')
    assert.equal(SQLSTATES['01000']?.kind, 'warning')
    // Codes listed twice in errcodes.txt (a second C macro) keep their spec name.
    assert.equal(SQLSTATES['3D000']?.name, 'invalid_catalog_name')
    assert.equal(SQLSTATE_CLASSES['23'], 'Integrity Constraint Violation')
  })

  it('is well formed: every code is five characters in a known class', () => {
    const codes = Object.keys(SQLSTATES)
    assert.ok(codes.length > 250, `only ${codes.length} codes`)
    for (const code of codes) {
      assert.match(code, /^[0-9A-Z]{5}$/)
      assert.ok(SQLSTATE_CLASSES[code.slice(0, 2)], `no class for ${code}`)
    }
  })
})
