// pgcrew as users get it: `npm pack`, installed from the tarball into a fresh project of their own,
// then `npx pgcrew run pipeline.ts` with a TypeScript pipeline and a TypeScript worker (no
// `node --import tsx`, no tsx of the user's own).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { admin, atEnd, freshDatabase } from '../helpers.ts'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname
// npm pack builds (prepare) and npm install resolves from the cache: tens of seconds, more under load.
const NPM_TIMEOUT_MILLIS = 300_000

const PIPELINE = `import { definePipeline, type PipelineTask } from 'pgcrew'

interface Star extends PipelineTask {
  key: number
  magnitude: number
}

const stars: Star[] = Array.from({ length: 40 }, (_, i) => ({ key: i + 1, magnitude: i / 10 }))

export default definePipeline<Star>({
  name: 'stars',
  worker: new URL('./star-worker.ts', import.meta.url),
  async setup(db) {
    await db.query('CREATE TABLE IF NOT EXISTS seen (key int PRIMARY KEY, magnitude real NOT NULL)')
  },
  tasks: stars,
})
`

const WORKER = `import { defineWorker } from 'pgcrew'

type Star = { key: number; magnitude: number }

export default defineWorker(async () => async (star: Star, { tx }) => {
  const brighter: number = star.magnitude - 1
  await tx!.query('INSERT INTO seen (key, magnitude) VALUES ($1, $2)', [star.key, brighter + 1])
})
`

test('installed from its npm pack tarball into a fresh project, `npx pgcrew run pipeline.ts` runs a TypeScript pipeline and worker out of the box', { timeout: 3 * NPM_TIMEOUT_MILLIS }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'pgcrew-pack-'))
  atEnd(() => rmSync(work, { recursive: true, force: true }))
  const npmEnv = { PATH: process.env.PATH, HOME: process.env.HOME, npm_config_update_notifier: 'false' }
  await run('npm', ['pack', '--pack-destination', work], { cwd: root, env: npmEnv, timeout: NPM_TIMEOUT_MILLIS })
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))
  assert.ok(tarball, `npm pack left no tarball in ${work}`)

  const project = join(work, 'my-project')
  await run('mkdir', [project])
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-project', private: true, type: 'module' }))
  // --ignore-scripts: no postinstall needs the network (esbuild's binary comes as an optional dependency).
  await run('npm', ['install', join(work, tarball), '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: project, env: npmEnv, timeout: NPM_TIMEOUT_MILLIS })
  writeFileSync(join(project, 'pipeline.ts'), PIPELINE)
  writeFileSync(join(project, 'star-worker.ts'), WORKER)

  const { dbname, url } = await freshDatabase('packed')
  const { stdout, stderr } = await run('npx', ['--no-install', 'pgcrew', 'run', 'pipeline.ts', '--url', url, '--threads', '2', '--json'], {
    cwd: project,
    env: { ...npmEnv, NODE_OPTIONS: '' },
    timeout: NPM_TIMEOUT_MILLIS,
  })
  const summary = JSON.parse(stdout)
  assert.deepEqual([summary.done, summary.failed], [40, 0], stderr)
  assert.equal(summary.threads, 2)
  assert.deepEqual(await admin('SELECT count(*)::int AS n, sum(magnitude)::numeric(6,1)::text AS total FROM seen', [], dbname), [{ n: 40, total: '78.0' }])
})
