import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { compareVersions, highestVersion } from './migrate-versions.ts'
import type { UpdateScript } from './migrate-versions.ts'

/** The migration scripts of one application, as found in its folder. */
export interface ScriptFolder {
  dir: string
  app: string
  /** `create_<app>.sql`, if present. */
  create: string | undefined
  updates: UpdateScript[]
  /** The highest `to` of the update scripts. */
  latest: string | undefined
}

const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+-]*$/

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/**
 * Reads a scripts folder: `create_<app>.sql` holds the whole current schema and
 * `update_<app>_<from>_to_<to>.sql` one step. Misnamed or backwards scripts are errors, not skipped,
 * because a silently ignored script is a schema that silently differs.
 */
export async function readScriptFolder(dir: string, app: string): Promise<ScriptFolder> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(app)) {
    throw new PgcrewError('INVALID_OPTION', `app name ${JSON.stringify(app)} must be letters, digits, _ or - (it is part of the script file names)`)
  }
  let names: string[]
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => e.name)
      .sort()
  } catch (error) {
    throw new PgcrewError('MIGRATE_NO_SCRIPTS', `cannot read the scripts folder ${dir}: ${(error as Error).message}`, { cause: error })
  }
  const updatePattern = new RegExp(`^update_${escapeRegExp(app)}_(.+)_to_(.+)\\.sql$`)
  let create: string | undefined
  const updates: UpdateScript[] = []
  for (const name of names) {
    if (name === `create_${app}.sql`) {
      create = name
      continue
    }
    if (!name.startsWith(`update_${app}_`)) continue
    const match = updatePattern.exec(name)
    // update_<app>_admin_1_to_2.sql belongs to an app named <app>_admin: versions never hold "_".
    if (match !== null && (match[1]!.includes('_') || match[2]!.includes('_'))) continue
    if (match === null || !VERSION.test(match[1]!) || !VERSION.test(match[2]!)) {
      throw new PgcrewError(
        'MIGRATE_BAD_SCRIPT_NAME',
        `${join(dir, name)} looks like an update script for ${app} but is not named update_${app}_<from>_to_<to>.sql; rename it (versions are like 0.10 or 2.1.3)`,
      )
    }
    const [, from, to] = match as unknown as [string, string, string]
    if (compareVersions(from, to) >= 0) {
      throw new PgcrewError('MIGRATE_BAD_SCRIPT_NAME', `${join(dir, name)} goes from ${from} to ${to}, which is not an upgrade; pgcrew never downgrades, so remove or rename it`)
    }
    updates.push({ from, to, file: name })
  }
  if (create === undefined && updates.length === 0) {
    throw new PgcrewError('MIGRATE_NO_SCRIPTS', `no scripts for ${app} in ${dir}: expected create_${app}.sql and update_${app}_<from>_to_<to>.sql files`)
  }
  updates.sort((a, b) => compareVersions(a.from, b.from) || compareVersions(a.to, b.to))
  return { dir, app, create, updates, latest: highestVersion(updates.map((u) => u.to)) }
}

/** Reads one script of the folder as UTF-8 text (a byte-order mark is dropped). */
export async function readScript(folder: ScriptFolder, file: string): Promise<string> {
  return (await readFile(join(folder.dir, file), 'utf8')).replace(/^\uFEFF/, '')
}
