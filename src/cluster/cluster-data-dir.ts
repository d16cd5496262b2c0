// A data directory that outlives the server process: one owner at a time, a superuser password kept
// beside the data, and whatever a killed run left behind cleaned up before the next start.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { PgcrewError } from '../errors/pgcrew-error.ts'

/** What pgcrew keeps inside a data directory it made, to log in again on the next start. */
export interface DataDirCredentials {
  superuser: string
  password: string
}

const CREDENTIALS = 'pgcrew-superuser.json'

/** Is `pid` a running process? EPERM means it runs as someone else, which is still running. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Take `<dataDir>.lock` for this process, or say who has it. Two postmasters on one directory are
 * refused by PostgreSQL itself; this lock also keeps a second run from stopping, re-creating or
 * deleting (`fresh`) a directory the first is using. A lock whose process is gone (SIGKILL) is stale.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = `${dataDir}.lock`
  mkdirSync(dirname(file), { recursive: true })
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 })
      return () => {
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file)
        } catch {
          // already gone: nothing to release
        }
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    let holder: number
    try {
      holder = Number(readFileSync(file, 'utf8').trim())
    } catch {
      continue // released between our two looks: try again
    }
    if (holder > 0 && alive(holder)) {
      throw new PgcrewError(
        'DATA_DIR_IN_USE',
        `the PostgreSQL data directory ${dataDir} is in use by ${holder === process.pid ? 'this process' : `another pgcrew process (pid ${holder})`}; ` +
          `wait for it to finish (if no pgcrew process uses it, remove ${file})`,
        { details: { dataDir, pid: holder } },
      )
    }
    rmSync(file, { force: true })
  }
  throw new PgcrewError('DATA_DIR_IN_USE', `could not take the lock ${file}: other processes keep taking it`, { details: { dataDir } })
}

/** The postmaster named by `postmaster.pid`, if that process is still there: running, or a zombie not yet reaped. */
function leftoverPostmaster(dataDir: string): { pid: number; zombie: boolean } | undefined {
  let pid: number
  try {
    pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0])
  } catch {
    return undefined
  }
  if (!(pid > 0) || !alive(pid)) return undefined // stale: PostgreSQL itself replaces such a file
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return { pid, zombie: false } // no /proc (macOS): trust the pid file, as pg_ctl does
  }
  // "pid (comm) state …": a killed postmaster stays a zombie until its new parent reaps it, and
  // PostgreSQL takes a zombie's pid as a live postmaster. A pid reused by another program is not ours.
  const m = /^\d+ \((.*)\) (\S)/s.exec(stat)
  if (m?.[2] === 'Z') return { pid, zombie: true }
  return m?.[1]?.includes('postgres') ? { pid, zombie: false } : undefined
}

async function gone(pid: number, millis: number): Promise<boolean> {
  const deadline = Date.now() + millis
  while (Date.now() < deadline) {
    if (!alive(pid)) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return !alive(pid)
}

/**
 * Stop a server still running on `dataDir` although its owner is gone (the run that started it was
 * SIGKILLed, and the server, in a process group of its own, lived on). Call only holding the lock.
 * Fast shutdown first (the data stays consistent), then immediate shutdown (crash recovery next start).
 */
export async function stopLeftoverServer(dataDir: string): Promise<void> {
  const left = leftoverPostmaster(dataDir)
  if (left === undefined) return
  const { pid } = left
  if (!left.zombie) {
    process.kill(pid, 'SIGINT')
    if (await gone(pid, 30_000)) return
    process.kill(pid, 'SIGQUIT')
  }
  if (await gone(pid, 15_000)) return
  throw new PgcrewError(
    'TEMP_CLUSTER_FAILED',
    left.zombie
      ? `the PostgreSQL server (pid ${pid}) that ran on ${dataDir} was killed and is not reaped (a container without an init process?); PostgreSQL will not start while that pid exists`
      : `a PostgreSQL server (pid ${pid}) left running on ${dataDir} does not stop; stop it (kill ${pid}) and try again`,
  )
}

/** The credentials of a data directory pgcrew made, or an error saying what the directory is. */
export function readCredentials(dataDir: string): DataDirCredentials {
  try {
    const c = JSON.parse(readFileSync(`${dataDir}/${CREDENTIALS}`, 'utf8')) as DataDirCredentials
    if (typeof c.superuser === 'string' && typeof c.password === 'string') return c
  } catch {
    // fall through to the explanation
  }
  throw new PgcrewError('TEMP_CLUSTER_FAILED', `${dataDir} holds a PostgreSQL data directory that pgcrew did not make (no readable ${CREDENTIALS}); remove it (rm -rf ${dataDir}) or choose another`)
}

/**
 * Make sure `dataDir` holds a cluster pgcrew made, creating it with `initdb(dir, password)` when
 * missing. initdb runs in a sibling directory renamed into place when complete, so a run killed
 * half-way leaves no half-made cluster to be mistaken for a real one.
 */
export function ensureDataDir(dataDir: string, superuser: string, initdb: (dir: string, password: string) => void, prepare: (dir: string) => void): DataDirCredentials {
  if (existsSync(`${dataDir}/PG_VERSION`)) return readCredentials(dataDir)
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new PgcrewError('TEMP_CLUSTER_FAILED', `${dataDir} exists but is not a PostgreSQL data directory; remove it (rm -rf ${dataDir}) or choose another`)
  }
  // Staging left by a run killed during initdb (we hold the lock: no other initdb is running).
  for (const name of readdirSync(dirname(dataDir))) if (name.startsWith(`${basename(dataDir)}.init-`)) rmSync(join(dirname(dataDir), name), { recursive: true, force: true })
  const staging = `${dataDir}.init-${randomBytes(4).toString('hex')}`
  const credentials = { superuser, password: randomBytes(18).toString('base64url') }
  try {
    mkdirSync(staging, { recursive: true, mode: 0o700 })
    prepare(staging)
    initdb(staging, credentials.password)
    writeFileSync(`${staging}/${CREDENTIALS}`, JSON.stringify(credentials) + '\n', { mode: 0o600 })
    // rename(2) replaces an empty directory, which is all that may stand at dataDir here.
    renameSync(staging, dataDir)
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  return credentials
}
