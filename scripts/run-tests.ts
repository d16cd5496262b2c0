// Runs the node:test suites against one throwaway PostgreSQL (or PGCREW_TEST_URL), then removes it.
// Node 20's test runner cannot glob, so the files are listed here (test/ and its subject folders).
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { startTempCluster, type TempCluster } from '../src/cluster/temp-cluster.ts'

const args = process.argv.slice(2)
const flags = args.filter((a) => a.startsWith('--'))
const named = args.filter((a) => !a.startsWith('--'))
const files = named.length
  ? named
  : readdirSync('test', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.test.ts') && !f.startsWith('fixtures'))
      .sort()
      .map((f) => join('test', f))
// No test file may hang the suite (CI gives a run 90 minutes). node:test applies this to each file
// as a whole; the slowest (crew) takes under a minute alone and about two under double load.
if (!flags.some((f) => f.startsWith('--test-timeout'))) flags.push('--test-timeout=600000')

let cluster: TempCluster | undefined
const env = { ...process.env }
if (!env.PGCREW_TEST_URL) {
  cluster = await startTempCluster({ settings: { max_connections: 200 } })
  env.PGCREW_TEST_URL = cluster.url
  console.log(`# test server: PostgreSQL (${cluster.source} binaries) at ${cluster.displayUrl}`)
}
// Tests must not pick up the developer's own servers, profiles or passwords.
for (const key of ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGPASSFILE', 'PGCREW_PROFILE', 'PGCREW_PROFILES', 'PGCREW_HOSTNAME']) delete env[key]

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...flags, ...files], { stdio: 'inherit', env })
const code: number = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))
await cluster?.stop()
process.exit(code)
