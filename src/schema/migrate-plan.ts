import { PgcrewError } from '../errors/pgcrew-error.ts'
import { findUpgradePath } from './migrate-versions.ts'
import { NO_TRANSACTION_HEADER, prepareScript } from './migrate-script.ts'
import { readScript } from './migrate-scripts.ts'
import type { PreparedScript, PreparedStatement } from './migrate-script.ts'
import type { ScriptFolder } from './migrate-scripts.ts'
import type { TemplateDialect, TemplateVariables } from './migrate-template.ts'

/** What a migration will do, decided before anything runs. */
export interface MigrationPlan {
  action: 'create' | 'upgrade' | 'none'
  /** The database's version before, or null for a database without the schema. */
  from: string | null
  to: string
  /** The scripts in the order they run, each with the version it leads to. */
  scripts: Array<PreparedScript & { version: string }>
  notices: string[]
}

/** The version the scripts describe: an explicit target, else the highest `to` of the update scripts. */
export function targetVersion(folder: ScriptFolder, target: string | undefined): string {
  const version = target ?? folder.latest
  if (version === undefined) {
    throw new PgcrewError('MIGRATE_NO_VERSION', `${folder.dir} has only create_${folder.app}.sql, so the schema's version is unknown; pass target (--target) to name it`)
  }
  return version
}

/**
 * Plans the move from `current` (null: no schema yet) to the target version and prepares every
 * script on the way. Problems in any of them are reported together, before anything has run.
 */
export async function planMigration(folder: ScriptFolder, current: string | null, options: { target?: string; variables: TemplateVariables; templates?: TemplateDialect }): Promise<MigrationPlan> {
  const to = targetVersion(folder, options.target)
  let steps: Array<{ file: string; version: string }>
  if (current === null) {
    if (folder.create === undefined) {
      throw new PgcrewError('MIGRATE_NO_CREATE', `the database has no ${folder.app} schema and ${folder.dir} has no create_${folder.app}.sql to make one`)
    }
    steps = [{ file: folder.create, version: to }]
  } else {
    steps = findUpgradePath(folder.updates, current, to, folder.app).map((u) => ({ file: u.file, version: u.to }))
  }
  const scripts: MigrationPlan['scripts'] = []
  for (const step of steps) {
    const script = prepareScript(await readScript(folder, step.file), step.file, options.variables, options.templates)
    if (current === null && !script.transaction) {
      // A half-made schema with no version recorded could be neither resumed nor created again.
      script.problems.push({
        code: 'MIGRATE_NON_TRANSACTIONAL',
        file: step.file,
        line: 1,
        message: `${step.file} line 1: ${NO_TRANSACTION_HEADER} is for update scripts; a create must be all or nothing (and on new, empty tables a plain CREATE INDEX is as fast as CONCURRENTLY)`,
      })
    }
    scripts.push({ ...script, version: step.version })
  }
  const problems = scripts.flatMap((s) => s.problems)
  if (problems.length > 0) {
    throw new PgcrewError(
      problems[0]!.code,
      `nothing was run: ${problems.length === 1 ? 'a statement' : `${problems.length} statements`} ${scripts.every((s) => s.transaction) ? "cannot run in the migration's transaction" : problems.length === 1 ? 'does not fit the way its script runs' : 'do not fit the way their scripts run'}:\n  ${problems.map((p) => p.message).join('\n  ')}`,
      { details: { problems } },
    )
  }
  return {
    action: current === null ? 'create' : steps.length === 0 ? 'none' : 'upgrade',
    from: current,
    to,
    scripts,
    notices: scripts.flatMap((s) => s.notices),
  }
}

/** Every statement of a plan, in order. */
export function planStatements(plan: MigrationPlan): PreparedStatement[] {
  return plan.scripts.flatMap((s) => s.statements)
}
