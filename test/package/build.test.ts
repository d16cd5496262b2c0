// The published shape: tsc output runs without tsx — the bin, the crew's .js worker entry and a
// .js pipeline/worker pair, as a user gets them after `npm run build`.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { atEnd, freshDatabase, server } from '../helpers.ts'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

test('after tsc, `pgcrew run` runs a JavaScript pipeline on worker threads with no TypeScript loader', async () => {
  // Inside the repo so the build finds node_modules as an installed package would.
  const out = mkdtempSync(join(root, '.tmp-build-'))
  atEnd(() => rmSync(out, { recursive: true, force: true }))
  await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root })
  const { dbname } = await freshDatabase('built')
  const { host, port, user, password } = server()
  const env = { PATH: process.env.PATH, HOME: '/nonexistent', PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname, PGCREW_DEMO_TASKS: '300' }
  const { stdout } = await run(process.execPath, [join(out, 'src/cli.js'), 'run', join(out, 'examples/demo-pipeline.js'), '--threads', '2', '--json'], { env, cwd: root })
  const summary = JSON.parse(stdout)
  assert.equal(summary.done, 300)
  assert.equal(summary.failed, 0)
  assert.equal(Object.keys(summary.perWorker).length >= 1, true)
})
