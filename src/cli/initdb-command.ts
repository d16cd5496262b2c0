import { createInterface } from 'node:readline/promises'
import { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { migrate } from '../schema/migrate.ts'
import { TEMPLATE_DIALECTS } from '../schema/migrate-template.ts'
import type { TemplateDialect } from '../schema/migrate-template.ts'
import type { MigrateEvent, MigrateOptions, MigrateResult } from '../schema/migrate.ts'
import { UsageError, expectPositionals, type Command } from './cli-command.ts'
import { connectAs } from './cli-connect-as.ts'
import { printJson, println } from './cli-output.ts'

/**
 * initdb connects as the profile's admin unless told otherwise (or as the URL's role when no admin
 * is configured); `--as` means what it means for every command (admin, user, or a role name).
 */
async function connectForSchema(db: Database, as: string | undefined): Promise<void> {
  if (as !== undefined) return connectAs(db, as)
  try {
    await db.becomeAdmin()
  } catch (error) {
    if (!(error instanceof PgcrewError && error.code === 'ADMIN_NOT_CONFIGURED')) throw error
    await db.connect()
  }
}

function parseVariables(raw: string[]): Record<string, string> {
  const variables: Record<string, string> = {}
  for (const item of raw) {
    const eq = item.indexOf('=')
    if (eq < 1) throw new UsageError(`--var "${item}" must be NAME=VALUE`)
    const name = item.slice(0, eq)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--var ${JSON.stringify(name)}: a template name is letters, digits and _, not starting with a digit`)
    if (Object.hasOwn(variables, name)) throw new UsageError(`--var ${name} is given twice; pass each name once`)
    variables[name] = item.slice(eq + 1)
  }
  return variables
}

function summary(r: MigrateResult, app: string, dbname: string): string {
  const scripts = `${r.scripts.length} script${r.scripts.length === 1 ? '' : 's'}, ${r.statements} statement${r.statements === 1 ? '' : 's'}`
  const seeded = Object.entries(r.seeded)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ')
  const verb = r.dryRun ? { create: 'would create', upgrade: 'would upgrade', none: '' } : { create: 'created', upgrade: 'upgraded', none: '' }
  if (r.action === 'none') return `${app} in database ${dbname} is at version ${r.to}; nothing to do`
  const what = r.action === 'create' ? `${app} ${r.to}` : `${app} from ${r.from} to ${r.to}`
  return `${verb[r.action]} ${what} in database ${dbname} (${scripts}${seeded ? `; seeded ${seeded}` : ''}) in ${r.durationMillis} ms`
}

/** Names the scripts that run outside the transaction: a failure there is not rolled back. */
function outsideNote(files: string[]): string {
  return files.length === 0 ? '' : `; outside a transaction (--! no-transaction): ${files.join(', ')}`
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim())
  } finally {
    rl.close()
  }
}

export const command: Command = {
  name: 'initdb',
  summary: 'Create the schema or upgrade it to the current version from versioned SQL scripts',
  usage: `pgcrew initdb --scripts DIR --app NAME [--user ROLE] [--target V] [--version-table T.C]
                     [--profile P | --url URL] [--as admin|ROLE] [--seed FILE] [--var NAME=VALUE]...
                     [--templates sql|format] [--max-wait-seconds S] [--dry-run] [--yes] [--json]

Brings the database to the scripts' current version: runs create_<app>.sql on a database without
the schema, else the shortest chain of update_<app>_<from>_to_<to>.sql scripts, all in ONE
transaction under an advisory lock, so a failure changes nothing and concurrent runs wait. An update
script whose first line is --! no-transaction runs outside it, statement by statement, after what
came before has committed (for CREATE INDEX CONCURRENTLY, VACUUM…); --dry-run names such scripts.

  --scripts DIR          the folder of create_<app>.sql and update_<app>_<from>_to_<to>.sql
  --app NAME             the application name used in the script names
  --user ROLE            the application role ({username} in scripts; must exist, must not be a
                         superuser); default: the profile's user
  --target V             the version to reach (default: the highest version the scripts reach)
  --version-table T.C    the one-row table and column holding the version (default <app>_version.version)
  --profile P            use profile P (default: PGCREW_PROFILE, else the one this host gets)
  --url URL              connect to a postgres:// or pq:// string instead of a profile (not
                         together with --profile)
  --as WHO               admin (the default when the profile names one), user, or a role name
  --seed FILE            YAML or JSON rows (table: [rows]) inserted when the schema is created
  --var NAME=VALUE       a template value: {NAME} is quoted as an identifier, {NAME!literal} as a literal
  --templates D          how braces are read: sql (the default: in SQL code only; strings, comments
                         and $$ bodies are left alone) or format (the whole script is a Python
                         str.format template, as piwheels' are: '{{}}' means '{}' in strings too)
  --max-wait-seconds S   wait at most S seconds for another run's lock (default 300)
  --dry-run              print the exact SQL that would run and change nothing
  --yes                  do not ask for confirmation (needed when stdin is not a terminal)`,
  options: {
    scripts: { type: 'string' },
    app: { type: 'string' },
    user: { type: 'string' },
    target: { type: 'string' },
    'version-table': { type: 'string' },
    profile: { type: 'string' },
    url: { type: 'string' },
    as: { type: 'string' },
    seed: { type: 'string' },
    var: { type: 'string', multiple: true },
    templates: { type: 'string' },
    'max-wait-seconds': { type: 'string' },
    'dry-run': { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
  },
  async run({ values, positionals }, io) {
    expectPositionals(positionals, 0, 'initdb takes options only')
    const str = (name: string): string | undefined => {
      const v = values[name] as string | undefined
      if (v === '') throw new UsageError(`--${name} needs a non-empty value`)
      return v
    }
    const scripts = str('scripts')
    const app = str('app')
    if (scripts === undefined || app === undefined) throw new UsageError('--scripts DIR and --app NAME are required')
    const waitText = str('max-wait-seconds')
    const maxWaitSeconds = waitText === undefined ? undefined : /^\d+(\.\d+)?$/.test(waitText) ? Number(waitText) : NaN
    if (maxWaitSeconds !== undefined && !(maxWaitSeconds >= 0 && maxWaitSeconds <= 2_147_483)) {
      throw new UsageError(`--max-wait-seconds "${waitText}" must be a number of seconds from 0 to 2147483`)
    }
    const json = values.json === true
    const dryRun = values['dry-run'] === true
    if (!dryRun && values.yes !== true && (json || !process.stdin.isTTY)) {
      throw new UsageError('pass --yes to migrate without a confirmation prompt (stdin is not a terminal, or --json)')
    }
    // Every flag is checked before connecting: bad usage is exit 2, never a connection error first.
    const variables = parseVariables((values.var as string[] | undefined) ?? [])
    const templates = str('templates') as TemplateDialect | undefined
    if (templates !== undefined && !TEMPLATE_DIALECTS.includes(templates)) {
      throw new UsageError(`--templates ${JSON.stringify(templates)} must be ${TEMPLATE_DIALECTS.join(' or ')}`)
    }
    const profile = str('profile')
    const url = str('url')
    // A profile and a URL would both name a server, a database and roles; mixing them silently
    // (whose admin? whose user?) is worse than asking for one.
    if (profile !== undefined && url !== undefined) {
      throw new UsageError('--profile and --url both say where to connect; pass one of them (put extra settings in the URL, or in the profile)')
    }

    await using db = new Database({ profile, connectionString: url, env: io.env })
    await connectForSchema(db, str('as'))
    const dbname = db.dbname ?? '?'
    const progressLine = io.isTTY && !json
    const onProgress = (e: MigrateEvent): void => {
      if (e.type === 'notice') println(io.stderr, `notice: ${e.message}`)
      else if (e.type === 'statement' && progressLine) io.stderr.write(`\r\x1b[K[${e.index + 1}/${e.total}] ${e.file} line ${e.line}`)
      else if (e.type === 'plan' && e.action !== 'none' && !json)
        println(io.stderr, `# ${e.action} ${app}: ${e.from ?? '(no schema)'} → ${e.to}, ${e.scripts.length} script(s), ${e.statements} statement(s)${outsideNote(e.noTransaction)}`)
    }
    const options: MigrateOptions = {
      scripts,
      app,
      user: str('user'),
      target: str('target'),
      versionTable: str('version-table'),
      seed: str('seed'),
      variables,
      templates,
      maxWaitMillis: maxWaitSeconds === undefined ? undefined : maxWaitSeconds * 1000,
    }

    if (dryRun || values.yes !== true) {
      const plan = await migrate(db, { ...options, dryRun: true, onProgress: dryRun ? onProgress : undefined })
      if (dryRun || plan.action === 'none') {
        if (json) printJson(io, { app, database: dbname, ...plan })
        else {
          if (dryRun && plan.sql) io.stdout.write(plan.sql)
          println(dryRun && plan.sql ? io.stderr : io.stdout, summary(plan, app, dbname))
        }
        return 0
      }
      const question = `${plan.action === 'create' ? `Create ${app} ${plan.to}` : `Upgrade ${app} from ${plan.from} to ${plan.to}`} in database ${dbname} (${plan.scripts.length} script(s), ${plan.statements} statement(s)${outsideNote(plan.noTransaction)})? [y/N] `
      if (!(await confirm(question))) {
        println(io.stderr, 'nothing changed')
        return 1
      }
    }
    const result = await migrate(db, { ...options, onProgress })
    if (progressLine && result.statements > 0) io.stderr.write('\r\x1b[K')
    const { sql: _sql, ...done } = result
    if (json) printJson(io, { app, database: dbname, ...done })
    else println(io.stdout, summary(result, app, dbname))
    return 0
  },
}
