import assert from 'node:assert/strict'
import { test } from 'node:test'
import { main } from '../../src/cli/cli-main.ts'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { cleanEnv, collector, freshDatabase } from '../helpers.ts'

async function pgcrew(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = collector()
  const stderr = collector()
  const code = await main(argv, { stdout: stdout.stream, stderr: stderr.stream, env: cleanEnv(), isTTY: false })
  const run = { code, stdout: stdout.text(), stderr: stderr.text() }
  assert.ok(!run.stdout.includes('secret') && !run.stderr.includes('secret'))
  return run
}

test('pgcrew store config get|set: values typed as JSON when they are JSON, an update saved, --json', async () => {
  const { url } = await freshDatabase('storecli')
  assert.deepEqual(await pgcrew(['store', 'config', 'set', 'limit', '42', '--url', url]), { code: 0, stdout: 'limit = 42\n', stderr: '' })
  assert.equal((await pgcrew(['store', 'config', 'set', 'limit', '{"max":7}', '--url', url])).stdout, 'limit = {"max":7}\n')
  assert.equal((await pgcrew(['store', 'config', 'set', 'limit', '1', '--only-if-missing', '--url', url])).stdout, 'limit = {"max":7}\n')
  assert.equal((await pgcrew(['store', 'config', 'set', 'owner', 'Ada Lovelace', '--url', url])).stdout, 'owner = Ada Lovelace\n')
  assert.equal((await pgcrew(['store', 'config', 'get', 'owner', '--url', url])).stdout, 'Ada Lovelace\n')
  const json = await pgcrew(['store', 'config', 'get', 'limit', '--url', url, '--json'])
  assert.deepEqual(JSON.parse(json.stdout), { key: 'limit', value: { max: 7 } })
  const all = await pgcrew(['store', 'config', 'get', '--url', url])
  assert.match(all.stdout, /^KEY +VALUE +UPDATED\nlimit +\{"max":7\} +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\nowner +Ada Lovelace +/)
  const missing = await pgcrew(['store', 'config', 'get', 'nope', '--url', url])
  assert.equal(missing.code, 1)
  assert.equal(missing.stderr, 'pgcrew: no config value for "nope"; set one with: pgcrew store config set nope VALUE\n')
  const bad = await pgcrew(['store', 'config', 'frob', '--url', url])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /store config takes get or set, not "frob"/)
  // Read back through the library on another connection: the CLI saved it.
  await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
  assert.deepEqual(await (await openStore(db)).getConfig('limit'), { max: 7 })
})

test('pgcrew store events and sessions, as tables and --json', async () => {
  const { url } = await freshDatabase('storecli2')
  assert.deepEqual(await pgcrew(['store', 'sessions', '--url', url]), { code: 0, stdout: 'no sessions\n', stderr: '' })
  assert.equal((await pgcrew(['store', 'events', '--url', url])).stdout, 'no events\n')
  await using db = new Database({ connectionString: url, env: cleanEnv(), max: 1 })
  const store = await openStore(db)
  const e1 = await store.logEvent('disk almost full', { severity: 'warning' })
  await store.logEvent('started')
  await store.handle(e1.id)
  const s = await store.startSession({ name: 'nightly' })
  await store.queue('a')
  await store.queue('b')
  await store.stopSession()
  await store.startSession()

  const events = await pgcrew(['store', 'events', '--url', url])
  assert.match(events.stdout, /^ID +AT +SEVERITY +HANDLED +DESCRIPTION\n1 +\S+ \S+ +warning +yes +disk almost full\n2 +\S+ \S+ +info +no +started\n$/)
  assert.match((await pgcrew(['store', 'events', '--unhandled', '--url', url])).stdout, /^ID.*\n2 .*started\n$/)
  const severe: { description: string }[] = JSON.parse((await pgcrew(['store', 'events', '--severity', 'warning', '--json', '--url', url])).stdout)
  assert.deepEqual(
    severe.map((e: { description: string }) => e.description),
    ['disk almost full'],
  )
  const sessions = await pgcrew(['store', 'sessions', '--url', url])
  assert.match(sessions.stdout, new RegExp(`^ID +NAME +STARTED +STOPPED +MESSAGES\\n${s} +nightly  \\S+ \\S+ +\\S+ \\S+ +2\\n${s + 1} +- +\\S+ \\S+ +open +0\\n$`))
  const list: { id: number; name: string | null; count: number }[] = JSON.parse((await pgcrew(['store', 'sessions', '--json', '--url', url])).stdout)
  assert.deepEqual(
    list.map((x: { id: number; name: string | null; count: number }) => [x.id, x.name, x.count]),
    [
      [s, 'nightly', 2],
      [s + 1, null, 0],
    ],
  )
  const usage = await pgcrew(['store', 'events', '--severity', 'fatal', '--url', url])
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /--severity is one of debug, info, warning, error, critical, not "fatal"/)
})
