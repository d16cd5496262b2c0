import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { ensureDataDir, lockDataDir, stopLeftoverServer } from './cluster-data-dir.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { findPostgresBinaries, type BinaryPreference, type BinarySource } from './postgres-binaries.ts'

/** Options for {@link startTempCluster}; every field is optional. */
export interface TempClusterOptions {
  /** `auto` (system, then npm), `system` or `npm`. Default: `PGCREW_PG_BINARIES` or `auto`. */
  binaries?: BinaryPreference
  /** Name of the superuser initdb creates. Default `postgres`. */
  superuser?: string
  /** Extra server settings, e.g. `{ max_connections: '20' }`. */
  settings?: Record<string, string | number>
  /** How long to wait for the server to accept connections. Default 30 000. */
  startTimeoutMillis?: number
  /** Ports tried before giving up when another process takes the chosen one. Default 5. */
  portAttempts?: number
  /**
   * Keep the data here and reuse it on the next start (initdb when missing); `stop()` then stops
   * the server but keeps the data, and the server runs with durable settings (fsync on). One process
   * at a time: another gets DATA_DIR_IN_USE. Default: a throwaway directory with fast settings.
   */
  dataDir?: string
  /** With `dataDir`: remove what it holds and start with an empty cluster. Default false. */
  fresh?: boolean
}

const DEFAULTS = Object.freeze({ superuser: 'postgres', startTimeoutMillis: 30_000, portAttempts: 5 })

/** A running PostgreSQL; `stop()` (or `await using`) stops it and removes its data unless it persists. */
export interface TempCluster extends AsyncDisposable {
  readonly host: string
  readonly port: number
  /** The unix socket directory (a temporary one; for a throwaway cluster, the data directory's parent). */
  readonly socketDir: string
  readonly dataDir: string
  /** The data outlives stop() (the `dataDir` option). */
  readonly persistent: boolean
  readonly superuser: string
  /** The superuser's password (non-enumerable: never shows in a log or inspect). */
  readonly password: string
  /** `postgres://superuser:password@127.0.0.1:port/postgres` — a secret: do not print it. */
  readonly url: string
  /** The same URL with the password masked, safe to print. */
  readonly displayUrl: string
  readonly source: BinarySource
  readonly bindir: string
  /** The server's recent log output (its last 20 000 characters). */
  serverLog(): string
  /** Stop the server (fast shutdown) but keep its data: for outage tests; `startServer()` brings it back. */
  stopServer(): Promise<void>
  /** Start the server again after `stopServer()`, on the same port, and wait until it accepts connections. */
  startServer(): Promise<void>
  stop(): Promise<void>
}

interface RunAs {
  uid: number
  gid: number
  name: string
}

/** PostgreSQL refuses to run as root: find an unprivileged account to run it as. */
function unprivilegedUser(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined
  const passwd = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
  for (const name of ['postgres', 'nobody']) {
    const row = passwd.find((f) => f[0] === name)
    if (row) return { name, uid: Number(row[2]), gid: Number(row[3]) }
  }
  throw new PgcrewError('TEMP_CLUSTER_FAILED', 'running as root and no "postgres" or "nobody" user to run PostgreSQL as; create one (useradd postgres)')
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

const live = new Set<() => void>()
let exitHooksInstalled = false

/** Kill every live cluster synchronously: the only thing possible in 'exit' and on a fatal signal. */
function installExitHooks(): void {
  if (exitHooksInstalled) return
  exitHooksInstalled = true
  process.on('exit', () => {
    for (const kill of live) kill()
  })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      // Someone else handles this signal (a graceful shutdown that will call stop(), or exit and so
      // trigger the 'exit' hook above): killing the server now would pull it from under them.
      if (process.listenerCount(signal) > 1) return
      for (const kill of live) kill()
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
    })
  }
}

/** initdb's fast settings for data nobody keeps; a persistent cluster runs with PostgreSQL's durable defaults. */
const THROWAWAY_SETTINGS = ['-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'synchronous_commit=off']

/**
 * Start a PostgreSQL: initdb into a temp dir (or reuse `dataDir`), scram-sha-256 passwords on TCP
 * and on the socket, a random free port (retried on collision). A throwaway cluster is removed on
 * stop, on exit and on SIGINT/SIGTERM, and when setup fails half-way; a persistent one is stopped.
 *
 * @example
 * await using pg = await startTempCluster()
 * const db = new Database({ connectionString: pg.url })
 */
export async function startTempCluster(options: TempClusterOptions = {}): Promise<TempCluster> {
  const opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) }
  const { bindir, source } = findPostgresBinaries(options.binaries)
  const runAs = unprivilegedUser()
  const ids = runAs ? { uid: runAs.uid, gid: runAs.gid } : {}
  const persistent = options.dataDir !== undefined
  // The socket (and pwfile) always live in a short temp path: a unix socket path has ~100 bytes.
  const base = mkdtempSync(join(tmpdir(), 'pgcrew-'))
  const dataDir = persistent ? resolve(options.dataDir!) : join(base, 'data')
  let child: ChildProcess | undefined
  let log = ''
  let release = (): void => {}

  const cleanup = (): void => {
    rmSync(base, { recursive: true, force: true })
    release()
  }
  const killNow = (): void => {
    // Fast shutdown keeps kept data consistent; immediate is fine for data about to be deleted.
    if (child && child.exitCode === null) child.kill(persistent ? 'SIGINT' : 'SIGQUIT')
    cleanup()
  }
  live.add(killNow)
  installExitHooks()

  try {
    if (runAs) chownSync(base, runAs.uid, runAs.gid)
    const initdb = (dir: string, password: string): void => {
      const pwfile = join(base, 'pwfile')
      writeFileSync(pwfile, password + '\n', { mode: 0o600 })
      if (runAs) chownSync(pwfile, runAs.uid, runAs.gid)
      const init = spawnSync(
        join(bindir, 'initdb'),
        ['-D', dir, '-U', opts.superuser, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', ...(persistent ? [] : ['--no-sync'])],
        { ...ids, encoding: 'utf8', cwd: base },
      )
      rmSync(pwfile)
      if (init.status !== 0) {
        const reach = runAs && persistent ? `; PostgreSQL runs as the user ${runAs.name} here (pgcrew runs as root), which must be able to reach ${dataDir}` : ''
        throw new PgcrewError('TEMP_CLUSTER_FAILED', `initdb failed (${source} binaries in ${bindir})${reach}:\n${(init.stderr || init.stdout || String(init.error)).trim()}`)
      }
    }
    let superuser: string = opts.superuser
    let password: string
    if (persistent) {
      release = lockDataDir(dataDir)
      // A server a killed run left behind still holds the directory: stop it, then use the data.
      await stopLeftoverServer(dataDir)
      if (options.fresh) rmSync(dataDir, { recursive: true, force: true })
      const prepare = (dir: string): void => {
        if (runAs) chownSync(dir, runAs.uid, runAs.gid)
      }
      ;({ superuser, password } = ensureDataDir(dataDir, opts.superuser, initdb, prepare))
    } else {
      password = randomBytes(18).toString('base64url')
      initdb(dataDir, password)
    }
    const settings = [...(persistent ? [] : THROWAWAY_SETTINGS), ...Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`])]
    const launch = async (port: number): Promise<string> => {
      log = ''
      child = spawn(
        join(bindir, 'postgres'),
        ['-D', dataDir, '-p', String(port), '-k', base, '-c', 'listen_addresses=127.0.0.1', ...settings],
        // Its own process group: a terminal's Ctrl-C reaches every process of the foreground group,
        // and the server must outlive it long enough for a graceful end (the exit hooks stop it).
        { ...ids, cwd: base, stdio: ['ignore', 'ignore', 'pipe'], detached: true },
      )
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        log = (log + d).slice(-20_000)
      })
      const ready = await waitReady(child, port, superuser, password, opts.startTimeoutMillis)
      if (ready === 'ready') {
        child.unref()
        ;(child.stderr as { unref?: () => void } | null)?.unref?.()
      }
      return ready
    }
    for (let attempt = 1; ; attempt++) {
      const port = await freePort()
      const ready = await launch(port)
      if (ready === 'ready') {
        const relaunch = async (): Promise<ChildProcess> => {
          const again = await launch(port)
          if (again !== 'ready') throw new PgcrewError('TEMP_CLUSTER_FAILED', `PostgreSQL did not start again: ${again}\n${log.trim().split('\n').slice(-8).join('\n')}`)
          return child!
        }
        return makeHandle({ port, base, dataDir, persistent, superuser, password, source, bindir, proc: child!, relaunch, killNow, cleanup, log: () => log })
      }
      if (ready === 'port-taken' && attempt < opts.portAttempts) continue
      // Backends of a killed postmaster still attached to its shared memory leave within moments.
      if (persistent && /pre-existing shared memory block .* is still in use/.test(log) && attempt < 10) {
        await new Promise((r) => setTimeout(r, 1000))
        continue
      }
      throw new PgcrewError('TEMP_CLUSTER_FAILED', `PostgreSQL did not start (${source} binaries in ${bindir}): ${ready}\n${log.trim().split('\n').slice(-8).join('\n')}`)
    }
  } catch (error) {
    // Setup failed half-way: leave no server behind, and no data dir unless it is one that persists.
    killNow()
    live.delete(killNow)
    throw error
  }
}

async function waitReady(child: ChildProcess, port: number, user: string, password: string, timeoutMillis: number): Promise<string> {
  const deadline = Date.now() + timeoutMillis
  let exited: string | undefined
  child.once('exit', (code, signal) => {
    exited = `server exited (${signal ?? code})`
  })
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
    if (exited) return exited
    const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres' })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.end()
      return 'ready'
    } catch {
      // 57P03 "starting up" or ECONNREFUSED: not yet
    }
  }
  child.kill('SIGQUIT')
  return exited ?? `not ready after ${timeoutMillis} ms`
}

interface HandleParts {
  port: number
  base: string
  dataDir: string
  persistent: boolean
  superuser: string
  password: string
  source: BinarySource
  bindir: string
  proc: ChildProcess
  /** Start the server again on the same port and data (after stopServer()). */
  relaunch: () => Promise<ChildProcess>
  killNow: () => void
  /** Remove what stop() removes: the temp dir (with the data, unless it persists), the lock. */
  cleanup: () => void
  log: () => string
}

/** Stop a server process: SIGINT is a fast shutdown (open transactions roll back, sessions end cleanly). */
function stopProcess(proc: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve()
    proc.once('exit', () => resolve())
    proc.ref() // unref'd while running so it never holds the process open; now we must wait for it
    proc.kill('SIGINT')
    setTimeout(() => proc.kill('SIGQUIT'), 10_000).unref()
  })
}

function makeHandle(h: HandleParts): TempCluster {
  let stopping: Promise<void> | undefined
  let proc = h.proc
  // stop() waits for a stopServer()/startServer() in progress, so it never leaves a server behind.
  let cycling: Promise<unknown> = Promise.resolve()
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await cycling.catch(() => {})
      await stopProcess(proc)
      h.cleanup()
      live.delete(h.killNow)
    })())
  const stopServer = (): Promise<void> => (cycling = cycling.catch(() => {}).then(() => stopProcess(proc))) as Promise<void>
  const startServer = (): Promise<void> =>
    (cycling = cycling
      .catch(() => {})
      .then(async () => {
        if (stopping) throw new PgcrewError('TEMP_CLUSTER_FAILED', 'this temporary cluster was stopped for good; it cannot start again')
        if (proc.exitCode === null && proc.signalCode === null) return
        proc = await h.relaunch()
      })) as Promise<void>
  const handle = {
    host: '127.0.0.1',
    port: h.port,
    socketDir: h.base,
    dataDir: h.dataDir,
    persistent: h.persistent,
    superuser: h.superuser,
    source: h.source,
    bindir: h.bindir,
    displayUrl: `postgres://${encodeURIComponent(h.superuser)}:***@127.0.0.1:${h.port}/postgres`,
    serverLog: h.log,
    stopServer,
    startServer,
    stop,
    [Symbol.asyncDispose]: stop,
  }
  Object.defineProperty(handle, 'password', { value: h.password, enumerable: false })
  Object.defineProperty(handle, 'url', {
    value: `postgres://${encodeURIComponent(h.superuser)}:${encodeURIComponent(h.password)}@127.0.0.1:${h.port}/postgres`,
    enumerable: false,
  })
  return handle as unknown as TempCluster
}
