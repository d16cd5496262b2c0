// Bulk: copyFrom of a file against psql's \copy of the same file.
import { spawn } from 'node:child_process'
import { createReadStream, createWriteStream, existsSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import type { Database } from '../src/database/database.ts'

/** A COPY text file of `rows` rows shaped like bench_copy (id, name, value, at). */
export async function writeCopyFile(dir: string, rows: number): Promise<string> {
  const file = join(dir, 'bench-copy.tsv')
  const out = createWriteStream(file)
  let chunk = ''
  for (let i = 1; i <= rows; i++) {
    chunk += `${i}\titem-${i}\t${(i * 0.37).toFixed(3)}\t2026-01-01 00:00:${String(i % 60).padStart(2, '0')}+00\n`
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  out.end(chunk)
  await once(out, 'finish')
  return file
}

export function findPsql(bindir?: string): string | undefined {
  return [...(bindir ? [join(bindir, 'psql')] : []), '/usr/bin/psql', '/usr/lib/postgresql/15/bin/psql'].find((p) => existsSync(p))
}

/** Rows per second of db.copyFrom('bench_copy', file stream). */
export async function viaCopyFrom(db: Database, file: string, rows: number, mark?: () => void): Promise<number> {
  await db.query('TRUNCATE bench_copy')
  mark?.()
  const start = performance.now()
  const { rows: copied } = await db.copyFrom('bench_copy', createReadStream(file, { highWaterMark: 1 << 16 }))
  const seconds = (performance.now() - start) / 1000
  if (copied !== rows) throw new Error(`copyFrom copied ${copied} of ${rows} rows`)
  return rows / seconds
}

/** Rows per second of `psql -c "\copy bench_copy FROM file"` (process start included, as a user runs it). */
export async function viaPsql(psql: string, url: URL, file: string, rows: number, db: Database, mark?: () => void): Promise<number> {
  await db.query('TRUNCATE bench_copy')
  mark?.()
  const env = { ...process.env, PGPASSWORD: decodeURIComponent(url.password) }
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', url.hostname, '-p', url.port, '-U', decodeURIComponent(url.username), '-d', url.pathname.slice(1), '-c', `\\copy bench_copy FROM '${file}'`]
  const start = performance.now()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(psql, args, { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited ${code}: ${err}`))))
  })
  const seconds = (performance.now() - start) / 1000
  const { rows: counted } = await db.query<{ n: string }>('SELECT count(*) AS n FROM bench_copy')
  if (Number(counted[0]!.n) !== rows) throw new Error(`psql copied ${counted[0]!.n} of ${rows} rows`)
  return rows / seconds
}
