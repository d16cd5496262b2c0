// The three ways the bench runs the same pipeline: a hand-written loop, pgcrew's runPipeline, pgbench.
import { spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { extname, join } from 'node:path'
import type { Database } from '../src/database/database.ts'
import { runPipeline, definePipeline, type RunOptions } from '../src/pipeline/pipeline.ts'
import type { ProgressReporter } from '../src/pipeline/pipeline-progress.ts'
import { CLAIM_SQL, INSERT_SQL, READ_SQL, UPDATE_SQL } from './workload.ts'
import { tasks } from './hand-loop.ts'

export { handLoop, tasks } from './hand-loop.ts'

/** A bench worker next to this file: .js when compiled (npm run bench), .ts under tsx. */
export const workerUrl = (name: string): URL => new URL(`./workers/${name}${extname(new URL(import.meta.url).pathname)}`, import.meta.url)

/**
 * pgcrew's runPipeline over the same tasks. Timed from progress.start (the crew's threads exist then;
 * their init — import, connect — is inside the time, as a user pays it) to the summary.
 */
export async function viaPipeline(db: Database, name: string, count: number, seed: number, rounds: number, options: RunOptions, mark?: () => void): Promise<number> {
  let start = 0
  const progress: ProgressReporter = {
    start: () => {
      start = performance.now()
      mark?.()
    },
    update: () => {},
    stop: () => {},
  }
  const def = definePipeline({ name, worker: workerUrl('pipeline-task'), tasks: () => tasks(count, seed, rounds) })
  const summary = await runPipeline(db, def, { ...options, progress })
  const seconds = (performance.now() - start) / 1000
  if (summary.done !== count) throw new Error(`pipeline ${name}: ${summary.done} of ${count} done (${summary.failed} failed: ${summary.failures[0]?.message})`)
  return count / seconds
}

const PGBENCH_CANDIDATES = ['/usr/bin/pgbench', '/usr/lib/postgresql/15/bin/pgbench', '/usr/local/bin/pgbench']

export function findPgbench(bindir?: string): string | undefined {
  return [...(bindir ? [join(bindir, 'pgbench')] : []), ...PGBENCH_CANDIDATES].find((p) => existsSync(p))
}

/** The same statements as a pgbench custom script (no JavaScript compute: the server's own limit). */
export function pgbenchScript(dir: string, name: string): string {
  const file = join(dir, `${name}.sql`)
  const claim = CLAIM_SQL.replace('$1', `'${name}'`).replace('$2', ':key').replace('$3', '1').replace('$4', '0').replace(/\s+/g, ' ')
  writeFileSync(
    file,
    [
      '\\set id random(1, 100000)',
      '\\set key random(1, 2000000000)',
      'BEGIN;',
      `${claim};`,
      READ_SQL.replace('$1', ':id') + ';',
      INSERT_SQL.replace('$1', ':id').replace('$2', `'${'0'.repeat(64)}'`) + ';',
      UPDATE_SQL.replace('$1', ':id') + ';',
      'COMMIT;',
      '',
    ].join('\n'),
  )
  return file
}

/** Run pgbench -M prepared -c 4 for `count` transactions in all; its tps (without connection time). */
export async function viaPgbench(pgbench: string, url: URL, script: string, count: number, clients = 4): Promise<number> {
  const args = [
    '-n',
    '-M',
    'prepared',
    '-c',
    String(clients),
    '-t',
    String(Math.ceil(count / clients)),
    '-f',
    script,
    '-h',
    url.hostname,
    '-p',
    url.port,
    '-U',
    decodeURIComponent(url.username),
    url.pathname.slice(1),
  ]
  const env = { ...process.env, PGPASSWORD: decodeURIComponent(url.password) }
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(pgbench, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let text = ''
    child.stdout.on('data', (d) => (text += d))
    child.stderr.on('data', (d) => (text += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`pgbench exited ${code}: ${text.slice(-500)}`))))
  })
  const tps = /tps = ([\d.]+)/.exec(out)
  if (!tps) throw new Error(`no tps in pgbench output: ${out.slice(-300)}`)
  return Number(tps[1])
}
