import { createHash } from 'node:crypto'
import type { Database } from './database.ts'
import { PgcrewError } from './errors.ts'
import { withSettings } from './settings.ts'
import { planMigration, planStatements, targetVersion } from './migrate-plan.ts'
import type { MigrationPlan } from './migrate-plan.ts'
import { readScriptFolder } from './migrate-scripts.ts'
import type { ScriptFolder } from './migrate-scripts.ts'
import { insertSeed, loadSeed } from './migrate-seed.ts'
import type { SeedData } from './migrate-seed.ts'
import { TEMPLATE_DIALECTS } from './migrate-template.ts'
import type { TemplateDialect, TemplateVariables } from './migrate-template.ts'
import { parseVersionTable, readVersion, recordVersion } from './migrate-version-table.ts'
import type { VersionTable } from './migrate-version-table.ts'
import type { Transaction } from './transaction.ts'

/** Options of {@link migrate}; defaults in {@link MIGRATE_DEFAULTS}. */
export interface MigrateOptions {
  /** The folder holding `create_<app>.sql` and `update_<app>_<from>_to_<to>.sql`. */
  scripts: string
  /** The application name: part of the script names and the advisory lock key. */
  app: string
  /** The application role: must exist and must not be a superuser; `{username}` in scripts. Default: the profile's user. */
  user?: string
  /** The version to reach. Default: the highest `to` of the update scripts. */
  target?: string
  /** Plan and return the SQL without changing anything. */
  dryRun?: boolean
  /** Seed rows (a YAML/JSON file or the data) loaded when the schema is created, not on upgrades. */
  seed?: string | SeedData
  /** How long to wait for another runner's migration before failing with MIGRATE_LOCK_TIMEOUT. */
  maxWaitMillis?: number
  /** `TABLE.COLUMN` (or `SCHEMA.TABLE.COLUMN`) holding the version. Default `<app>_version.version`. */
  versionTable?: string
  /** Guess the version of a database that predates the version table; null means "no schema". */
  detectVersion?: (tx: Transaction) => Promise<string | null | undefined>
  /** Values for `{name}` / `{name!literal}` placeholders, besides `{username}` and `{dbname}`. */
  variables?: TemplateVariables
  /**
   * How braces are read: `'sql'` (default) templates SQL code only; `'format'` reads the whole
   * script as a Python `str.format` template (piwheels), braces inside strings and $$ bodies too.
   */
  templates?: TemplateDialect
  /** What the connected role must be: the database's owner (or a superuser), or a superuser. */
  adminMustBe?: 'owner' | 'superuser'
  /** Told about each step, for progress output. */
  onProgress?: (event: MigrateEvent) => void
}

/** Progress of a migration, in order: notices, plan, waiting, then one event per statement and seeded table. */
export type MigrateEvent =
  | { type: 'notice'; message: string }
  | { type: 'plan'; action: MigrationPlan['action']; from: string | null; to: string; scripts: string[]; statements: number }
  | { type: 'waiting'; app: string; maxWaitMillis: number }
  | { type: 'statement'; file: string; line: number; index: number; total: number }
  | { type: 'seed'; table: string; rows: number }

/** What {@link migrate} did (or, in a dry run, would do). */
export interface MigrateResult {
  action: 'create' | 'upgrade' | 'none'
  dryRun: boolean
  /** The version before; null when there was no schema. */
  from: string | null
  to: string
  scripts: string[]
  statements: number
  /** Rows inserted per seeded table. */
  seeded: Record<string, number>
  notices: string[]
  durationMillis: number
  /** The exact SQL that runs, script by script (always filled; printed by `--dry-run`). */
  sql: string
}

/** The defaults of {@link MigrateOptions}; the README points here. */
export const MIGRATE_DEFAULTS: Readonly<{ maxWaitMillis: number; adminMustBe: 'owner' | 'superuser'; dryRun: boolean; templates: TemplateDialect }> = Object.freeze({
  maxWaitMillis: 300_000,
  adminMustBe: 'owner',
  dryRun: false,
  templates: 'sql',
})

/** The advisory lock key of an app's migrations: the first 8 bytes of sha256("pgcrew.migrate:" + app). */
export function migrationLockKey(app: string): bigint {
  return createHash('sha256').update(`pgcrew.migrate:${app}`).digest().readBigInt64BE(0)
}

interface Roles {
  dbname: string
}

async function checkRoles(tx: Transaction, user: string | undefined, mustBe: 'owner' | 'superuser'): Promise<Roles> {
  const { rows } = await tx.query<{ me: string; dbname: string; superuser: boolean; owner: boolean; db_owner: string }>(
    `SELECT current_user AS me, current_database() AS dbname, r.rolsuper AS superuser,
            pg_has_role(current_user, d.datdba, 'MEMBER') AS owner, pg_get_userbyid(d.datdba) AS db_owner
       FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`,
  )
  const me = rows[0]!
  if (!me.superuser && (mustBe === 'superuser' || !me.owner)) {
    const need = mustBe === 'superuser' ? 'a superuser' : `a superuser or the owner of database ${me.dbname} (${me.db_owner})`
    throw new PgcrewError('MIGRATE_ROLE', `connected as ${me.me}, but migrating needs ${need}; connect as the profile's admin (db.becomeAdmin(), or pgcrew initdb's default)`)
  }
  if (user !== undefined) {
    const { rows: app } = await tx.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [user])
    if (app.length === 0) {
      throw new PgcrewError('MIGRATE_ROLE', `the application role ${user} does not exist; create it first (CREATE ROLE ... LOGIN) — pgcrew does not create roles`)
    }
    if (app[0]!.rolsuper) {
      throw new PgcrewError('MIGRATE_ROLE', `the application role ${user} is a superuser, which bypasses every permission the scripts grant; use an ordinary role (ALTER ROLE ... NOSUPERUSER)`)
    }
  }
  return { dbname: me.dbname }
}

async function acquireLock(tx: Transaction, app: string, maxWaitMillis: number): Promise<void> {
  const key = migrationLockKey(app).toString()
  if (maxWaitMillis <= 0) {
    const { rows } = await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS ok', [key])
    if (rows[0]!.ok) return
  } else {
    // lock_timeout bounds the wait; it is put back at once so the scripts run under the usual setting.
    try {
      await withSettings(tx, { lock_timeout: `${Math.min(Math.ceil(maxWaitMillis), 2_147_483_647)}ms` }, () => tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [key]))
      return
    } catch (error) {
      if ((error as { sqlstate?: string }).sqlstate !== '55P03') throw error
    }
  }
  throw new PgcrewError(
    'MIGRATE_LOCK_TIMEOUT',
    `another migration of ${app} held the lock for more than ${maxWaitMillis} ms; nothing was changed — run again later or raise maxWaitMillis (--max-wait)`,
    { details: { app, maxWaitMillis } },
  )
}

async function currentVersion(tx: Transaction, vt: VersionTable, detect: MigrateOptions['detectVersion']): Promise<string | null> {
  const recorded = await readVersion(tx, vt)
  if (recorded !== undefined) return recorded
  return (await detect?.(tx)) ?? null
}

function planSql(plan: MigrationPlan, vt: VersionTable, seeding: boolean): string {
  const parts = plan.scripts.map((s) => [
    `-- ${s.file} (to ${s.version})`,
    ...s.statements.map((st) => `-- line ${st.line}\n${st.sql};`),
    `-- then: record version ${s.version} in ${vt.name} unless the script did`,
  ].join('\n'))
  if (seeding) parts.push('-- then: insert the seed rows')
  return parts.join('\n\n') + (parts.length > 0 ? '\n' : '')
}

type ResolvedMigrateOptions = Readonly<MigrateOptions & { maxWaitMillis: number; adminMustBe: 'owner' | 'superuser'; dryRun: boolean; templates: TemplateDialect }>

function resolveMigrateOptions(options: MigrateOptions): ResolvedMigrateOptions {
  if (typeof options?.scripts !== 'string' || typeof options.app !== 'string') {
    throw new PgcrewError('INVALID_OPTION', 'migrate needs scripts (the scripts folder) and app (the application name)')
  }
  for (const name of ['username', 'dbname']) {
    if (options.variables !== undefined && Object.hasOwn(options.variables, name)) {
      throw new PgcrewError('INVALID_OPTION', `variables.${name} would hide the built-in {${name}}; pass user (for {username}) or connect to the database you mean (for {dbname})`)
    }
  }
  const maxWaitMillis = options.maxWaitMillis ?? MIGRATE_DEFAULTS.maxWaitMillis
  if (!(maxWaitMillis >= 0)) throw new PgcrewError('INVALID_OPTION', `maxWaitMillis must be 0 or more, not ${maxWaitMillis}`)
  const adminMustBe = options.adminMustBe ?? MIGRATE_DEFAULTS.adminMustBe
  if (adminMustBe !== 'owner' && adminMustBe !== 'superuser') throw new PgcrewError('INVALID_OPTION', `adminMustBe must be 'owner' or 'superuser', not ${String(adminMustBe)}`)
  const templates = options.templates ?? MIGRATE_DEFAULTS.templates
  if (!TEMPLATE_DIALECTS.includes(templates)) throw new PgcrewError('INVALID_OPTION', `templates must be ${TEMPLATE_DIALECTS.map((d) => `'${d}'`).join(' or ')}, not ${String(templates)}`)
  return Object.freeze({ ...options, maxWaitMillis, adminMustBe, templates, dryRun: options.dryRun ?? MIGRATE_DEFAULTS.dryRun })
}

function failureLine(statement: { sql: string; line: number }, error: unknown): number {
  const position = Number((error as { position?: string }).position)
  if (!Number.isInteger(position) || position < 1) return statement.line
  return statement.line + (statement.sql.slice(0, position - 1).match(/\n/g)?.length ?? 0)
}

/**
 * Creates the schema or upgrades it to the target version, in ONE transaction under an advisory
 * lock keyed by the app: a failure leaves the database as it was, and concurrent runners wait.
 * @example await migrate(db, { scripts: 'sql/', app: 'shop', user: 'shop_web', seed: 'seed.yaml' })
 */
export async function migrate(db: Database, options: MigrateOptions): Promise<MigrateResult> {
  const started = performance.now()
  const o = resolveMigrateOptions(options)
  const emit = (event: MigrateEvent): void => o.onProgress?.(event)
  const vt = parseVersionTable(o.versionTable ?? `${o.app}_version.version`)
  // Everything that can be checked without the database fails here, before a connection is used.
  const folder: ScriptFolder = await readScriptFolder(o.scripts, o.app)
  targetVersion(folder, o.target)
  const seed = o.seed === undefined ? undefined : await loadSeed(o.seed)
  if (!db.connected) await db.connect()
  if (db.readOnly && !o.dryRun) {
    throw new PgcrewError('MIGRATE_ROLE', `connected read-only as ${db.user}; migrating changes the schema, so connect as the profile's admin (db.becomeAdmin())`)
  }
  const profile = db.profile === undefined ? undefined : db.listProfiles().find((p) => p.name === db.profile)
  const user = o.user ?? profile?.user

  return db.transaction(async (tx) => {
    const { dbname } = await checkRoles(tx, user, o.adminMustBe)
    const variables = { ...o.variables, dbname, ...(user === undefined ? {} : { username: user }) }
    // The version is read only once the lock is ours: a runner that read the version table first
    // would hold a lock on it while waiting, and deadlock with a script that alters that table.
    if (!o.dryRun) {
      emit({ type: 'waiting', app: o.app, maxWaitMillis: o.maxWaitMillis })
      await acquireLock(tx, o.app, o.maxWaitMillis)
    }
    const chosen = await planMigration(folder, await currentVersion(tx, vt, o.detectVersion), { target: o.target, variables, templates: o.templates })
    const statements = planStatements(chosen)
    for (const message of chosen.notices) emit({ type: 'notice', message })
    emit({ type: 'plan', action: chosen.action, from: chosen.from, to: chosen.to, scripts: chosen.scripts.map((s) => s.file), statements: statements.length })
    const seeding = chosen.action === 'create' && seed !== undefined
    const result = (seeded: Record<string, number>): MigrateResult => ({
      action: chosen.action,
      dryRun: o.dryRun,
      from: chosen.from,
      to: chosen.to,
      scripts: chosen.scripts.map((s) => s.file),
      statements: statements.length,
      seeded,
      notices: chosen.notices,
      durationMillis: Math.round(performance.now() - started),
      sql: planSql(chosen, vt, seeding),
    })
    if (o.dryRun) return result({})

    let index = 0
    for (const script of chosen.scripts) {
      for (const statement of script.statements) {
        emit({ type: 'statement', file: statement.file, line: statement.line, index: index++, total: statements.length })
        try {
          await tx.query(statement.sql)
        } catch (error) {
          const line = failureLine(statement, error)
          throw new PgcrewError(
            'MIGRATE_FAILED',
            `${statement.file} line ${line}: ${(error as Error).message}; everything was rolled back, ${chosen.from === null ? 'the database still has no schema' : `the database is still at ${chosen.from}`}`,
            { cause: error, details: { file: statement.file, line, sqlstate: (error as { sqlstate?: string }).sqlstate } },
          )
        }
      }
      await recordVersion(tx, vt, script.version)
    }
    const seeded = seeding ? await insertSeed(tx, seed!, (table, rows) => emit({ type: 'seed', table, rows })) : {}
    return result(seeded)
  }, { isolation: 'read committed', readOnly: o.dryRun })
}
