import { createHash } from 'node:crypto'
import type { Database } from '../database/database.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { planMigration, planStatements, targetVersion } from './migrate-plan.ts'
import type { MigrationPlan } from './migrate-plan.ts'
import { readScriptFolder } from './migrate-scripts.ts'
import type { ScriptFolder } from './migrate-scripts.ts'
import { insertSeed, loadSeed } from './migrate-seed.ts'
import type { SeedData } from './migrate-seed.ts'
import { TEMPLATE_DIALECTS } from './migrate-template.ts'
import type { TemplateDialect, TemplateVariables } from './migrate-template.ts'
import { parseVersionTable, readVersion } from './migrate-version-table.ts'
import type { VersionTable } from './migrate-version-table.ts'
import type { Transaction } from '../database/transaction.ts'
import { NO_TRANSACTION_HEADER } from './migrate-script.ts'
import type { PreparedStatement } from './migrate-script.ts'
import { runOutside, runTransactional } from './migrate-run.ts'
import type { ChainRun } from './migrate-run.ts'
import { inTransaction, lockSession, unlockSession } from './migrate-session.ts'

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

/** Progress of a migration, in order: waiting (for the lock), notices, plan, then one event per statement and seeded table. */
export type MigrateEvent =
  | { type: 'notice'; message: string }
  | { type: 'plan'; action: MigrationPlan['action']; from: string | null; to: string; scripts: string[]; noTransaction: string[]; statements: number }
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
  /** The scripts marked `--! no-transaction`, which run outside the transaction, statement by statement. */
  noTransaction: string[]
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

function lockTimeout(app: string, maxWaitMillis: number): PgcrewError {
  return new PgcrewError(
    'MIGRATE_LOCK_TIMEOUT',
    `another migration of ${app} held the lock for more than ${maxWaitMillis} ms; nothing was changed — run again later or raise maxWaitMillis (--max-wait-seconds)`,
    { details: { app, maxWaitMillis } },
  )
}

async function currentVersion(tx: Transaction, vt: VersionTable, detect: MigrateOptions['detectVersion']): Promise<string | null> {
  const recorded = await readVersion(tx, vt)
  if (recorded !== undefined) return recorded
  return (await detect?.(tx)) ?? null
}

function planSql(plan: MigrationPlan, vt: VersionTable, seeding: boolean): string {
  const parts = plan.scripts.map((s, i) => {
    const statements = s.statements.map((st) => `-- line ${st.line}\n${st.sql};`)
    if (s.transaction) return [`-- ${s.file} (to ${s.version})`, ...statements, `-- then: record version ${s.version} in ${vt.name} unless the script did`].join('\n')
    return [
      ...(i > 0 && plan.scripts[i - 1]!.transaction ? ['-- then: COMMIT (what ran so far stays done)'] : []),
      `-- ${s.file} (to ${s.version}), OUTSIDE a transaction (${NO_TRANSACTION_HEADER}): each statement commits on its own`,
      ...statements,
      `-- then: record version ${s.version} in ${vt.name} (a transaction of its own)${i + 1 < plan.scripts.length && plan.scripts[i + 1]!.transaction ? ', and BEGIN again' : ''}`,
    ].join('\n')
  })
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

/**
 * Creates the schema or upgrades it to the target version under an advisory lock keyed by the app,
 * on one connection. The scripts run in ONE transaction, so a failure leaves the database as it
 * was; a `--! no-transaction` script splits the chain: what ran before it commits, it runs
 * statement by statement, its version is recorded once it has run, and a new transaction follows.
 * Concurrent runners wait for the lock, which is held across the whole chain.
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

  const plan = async (tx: Transaction, dbname: string): Promise<MigrationPlan> => {
    const variables = { ...o.variables, dbname, ...(user === undefined ? {} : { username: user }) }
    const chosen = await planMigration(folder, await currentVersion(tx, vt, o.detectVersion), { target: o.target, variables, templates: o.templates })
    for (const message of chosen.notices) emit({ type: 'notice', message })
    const statements = planStatements(chosen).length
    emit({ type: 'plan', action: chosen.action, from: chosen.from, to: chosen.to, scripts: chosen.scripts.map((s) => s.file), noTransaction: outside(chosen), statements })
    return chosen
  }
  const result = (chosen: MigrationPlan, seeded: Record<string, number>): MigrateResult => ({
    action: chosen.action,
    dryRun: o.dryRun,
    from: chosen.from,
    to: chosen.to,
    scripts: chosen.scripts.map((s) => s.file),
    noTransaction: outside(chosen),
    statements: planStatements(chosen).length,
    seeded,
    notices: chosen.notices,
    durationMillis: Math.round(performance.now() - started),
    sql: planSql(chosen, vt, chosen.action === 'create' && seed !== undefined),
  })

  return db.withClient(async (client) => {
    if (client.getTransactionStatus?.() !== 'I') {
      throw new PgcrewError('MIGRATE_IN_TRANSACTION', 'migrate runs its own transactions (and, for --! no-transaction scripts, statements outside any); call it outside db.transaction()')
    }
    if (o.dryRun) {
      return inTransaction(client, async (tx) => result(await plan(tx, (await checkRoles(tx, user, o.adminMustBe)).dbname), {}), { readOnly: true })
    }
    const { dbname } = await inTransaction(client, (tx) => checkRoles(tx, user, o.adminMustBe))
    // The version is read only once the lock is ours: a runner that read the version table first
    // would hold a lock on it while waiting, and deadlock with a script that alters that table.
    emit({ type: 'waiting', app: o.app, maxWaitMillis: o.maxWaitMillis })
    const key = migrationLockKey(o.app)
    if (!(await lockSession(client, key, o.maxWaitMillis))) throw lockTimeout(o.app, o.maxWaitMillis)
    let failure: unknown
    try {
      let run: ChainRun | undefined
      let seeded: Record<string, number> = {}
      const onStatement = (st: PreparedStatement, index: number, total: number): void => emit({ type: 'statement', file: st.file, line: st.line, index, total })
      // The first transaction plans under the lock and runs up to the first no-transaction script.
      let next = await inTransaction(client, async (tx) => {
        const chosen = await plan(tx, dbname)
        run = { client, plan: chosen, vt, total: planStatements(chosen).length, index: 0, onStatement }
        const end = await runTransactional(tx, run, 0, chosen.from)
        // A create is one transactional script (planMigration refuses the header there): seed with it.
        if (chosen.action === 'create' && seed !== undefined) seeded = await insertSeed(tx, seed, (table, rows) => emit({ type: 'seed', table, rows }))
        return end
      })
      const chain = run!
      const reached = (i: number): string | null => (i > 0 ? chain.plan.scripts[i - 1]!.version : chain.plan.from)
      while (next < chain.plan.scripts.length) {
        const at = reached(next)!
        if (!chain.plan.scripts[next]!.transaction) {
          await runOutside(chain, next, at)
          next++
        } else {
          const start = next
          next = await inTransaction(client, (tx) => runTransactional(tx, chain, start, at))
        }
      }
      return result(chain.plan, seeded)
    } catch (error) {
      failure = error
      throw error
    } finally {
      await unlockSession(client, key, failure)
    }
  })
}

function outside(plan: MigrationPlan): string[] {
  return plan.scripts.filter((s) => !s.transaction).map((s) => s.file)
}
