import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { cleanEnv, freshDatabase, freshRole, scratchDir, server, writePgpass } from '../helpers.ts'

const fixture = (name: string) => new URL(`../fixtures/workers/${name}.ts`, import.meta.url)

describe('crews', () => {
  test('a crew made before connect() reaches the profile the master chose (PGCREW_PROFILE in a custom env)', async () => {
    const { dbname } = await freshDatabase('crewprofile')
    const role = await freshRole('crewprofile')
    const { host, port } = server()
    const dir = scratchDir()
    const profilesFile = join(dir, 'profiles.ini')
    writeFileSync(profilesFile, `[lab]\nhost = ${host}\nport = ${port}\ndbname = ${dbname}\nuser = ${role.name}\nreadonly = false\n`)
    const pgpassFile = writePgpass(dir, [`${host}:${port}:*:${role.name}:${role.password}`])
    await using db = new Database({ profilesFile, pgpassFile, env: cleanEnv({ PGCREW_PROFILE: 'lab' }), max: 2 })
    await using crew = await db.crew({ worker: fixture('echo'), threads: 1 })
    const who = await crew.run<{ u: string; d: string }>({ op: 'whoami' })
    assert.deepEqual([who.u, who.d], [role.name, dbname])
    assert.equal(db.profile, 'lab')
  })

  test('close() after a worker crashed does not wait for the dead worker', { timeout: 20_000 }, async () => {
    const { url } = await freshDatabase('crewclosecrash')
    await using db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
    const crew = await db.crew({ worker: fixture('echo'), threads: 1, closeTimeoutMillis: 60_000 })
    await crew.run({ op: 'whoami' })
    await assert.rejects(crew.run({ op: 'exit' }), { code: 'WORKER_CRASHED' })
    assert.equal(crew.crashes, 1)
    await crew.close() // with the dead worker still expected, this waited closeTimeoutMillis (60 s)
  })
})
