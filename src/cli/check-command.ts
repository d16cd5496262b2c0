import { Database } from '../database/database.ts'
import { DBVERSION_PATTERN } from '../connect/connect-options.ts'
import { showValue } from '../errors/show-value.ts'
import { connectAs } from './cli-connect-as.ts'
import { UsageError, expectPositionals, type Command } from './cli-command.ts'
import { keyValues, printJson, println, tildify } from './cli-output.ts'

export const command: Command = {
  name: 'check',
  summary: 'Connect and report the server, role, database and whether the session is read-only',
  usage: `pgcrew check [--profile P] [--url URL] [--as admin|user|ROLE] [--dbversion V] [--json]

  --profile P      use profile P (default: PGCREW_PROFILE, else the one this host gets)
  --url URL        connect to a postgres:// or pq:// string (overrides the profile's settings;
                   its password is used but never shown)
  --as WHO         admin: the profile's admin role; user: its user role (read-only sessions
                   unless the profile says readonly = false); any other name: that role
  --dbversion V    connect to <dbname>_<V>`,
  options: {
    profile: { type: 'string' },
    url: { type: 'string' },
    as: { type: 'string' },
    dbversion: { type: 'string' },
  },
  async run({ values, positionals }, io) {
    expectPositionals(positionals, 0, 'check takes options only')
    const profile = values.profile as string | undefined
    const url = values.url as string | undefined
    const as = values.as as string | undefined
    const dbversion = values.dbversion as string | undefined
    for (const [flag, v] of [
      ['--profile', profile],
      ['--url', url],
      ['--as', as],
      ['--dbversion', dbversion],
    ] as const) {
      if (v === '') throw new UsageError(`${flag} needs a non-empty value`)
    }
    if (dbversion !== undefined && !DBVERSION_PATTERN.test(dbversion)) throw new UsageError(`--dbversion ${showValue(dbversion)} may hold only letters, digits, _ . and -`)

    // One connection: the role and version are chosen before connecting, not switched to after.
    await using db = new Database({ profile, connectionString: url, dbversion, env: io.env })
    await connectAs(db, as)
    const { rows } = await db.query<{ current_user: string; session_user: string; database: string; read_only: string }>(
      "SELECT current_user, session_user, current_database() AS database, current_setting('transaction_read_only') AS read_only",
    )
    const row = rows[0]!
    const params = db.connectionParams!
    const report = {
      serverVersion: db.serverVersion ?? null,
      profile: db.profile ?? null,
      role: db.role?.kind ?? 'default',
      host: params.host,
      port: params.port,
      service: params.service ?? null,
      serviceFile: params.serviceFile ?? null,
      localSocketFor: params.socketFor ?? null,
      database: row.database,
      dbversion: db.dbversion ?? null,
      currentUser: row.current_user,
      sessionUser: row.session_user,
      readOnly: row.read_only === 'on',
      pooling: db.pooling,
    }
    if (values.json === true) {
      printJson(io, report)
      return 0
    }
    println(
      io.stdout,
      keyValues([
        ['server', `PostgreSQL ${report.serverVersion}`],
        ['profile', report.profile ?? (url ? '(none: --url)' : '(none: PG* environment and libpq defaults)')],
        ['service', params.service === undefined ? undefined : `${params.service} (${tildify(params.serviceFile!, io.env)})`],
        ['host', `${report.host}:${report.port}`],
        [
          'via',
          params.socketFor === undefined
            ? undefined
            : `${params.host.startsWith('/') ? 'the local socket' : "libpq's default host (no socket directory here)"}: the profile's host ${params.socketFor} is this machine (local_socket = false turns this off)`,
        ],
        ['database', report.database],
        ['user', report.currentUser + (report.sessionUser !== report.currentUser ? ` (session user ${report.sessionUser})` : '') + (as ? ` (--as ${as})` : '')],
        ['read-only', report.readOnly ? 'yes (writes fail with SQLSTATE 25006)' : 'no'],
        ['pooling', report.pooling],
      ]),
    )
    return 0
  },
}
