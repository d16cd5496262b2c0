import { PgcrewError } from '../errors/pgcrew-error.ts'
import { qname, quoteIdent } from '../toolkit/quote.ts'
import type { Transaction } from '../database/transaction.ts'

/** The one-row table and column holding the schema version, quoted and ready for SQL. */
export interface VersionTable {
  /** As the user wrote it, for messages: `configuration.version`. */
  name: string
  table: string
  column: string
  columnName: string
}

/**
 * Parses `TABLE.COLUMN` or `SCHEMA.TABLE.COLUMN`. Names are taken exactly as written (case kept,
 * no quoting needed), because they name catalog entries, not SQL text.
 */
export function parseVersionTable(spec: string): VersionTable {
  const parts = spec.split('.')
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new PgcrewError('INVALID_OPTION', `versionTable "${spec}" must be TABLE.COLUMN or SCHEMA.TABLE.COLUMN (piwheels: configuration.version)`)
  }
  const columnName = parts.pop()!
  return { name: spec, table: qname(...parts), column: quoteIdent(columnName), columnName }
}

async function tableExists(tx: Transaction, vt: VersionTable): Promise<boolean> {
  const { rows } = await tx.query<{ found: boolean; has_column: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS found,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped) AS has_column`,
    [vt.table, vt.columnName],
  )
  const { found, has_column } = rows[0]!
  if (found && !has_column) {
    throw new PgcrewError('MIGRATE_VERSION_TABLE', `the version table ${vt.table} exists but has no column ${vt.column}; fix versionTable (--version-table TABLE.COLUMN)`)
  }
  return found
}

/**
 * The version recorded in the database, or undefined when the version table does not exist.
 * An empty table, several rows or a NULL are errors: guessing there could run the wrong scripts.
 */
export async function readVersion(tx: Transaction, vt: VersionTable): Promise<string | undefined> {
  if (!(await tableExists(tx, vt))) return undefined
  const { rows } = await tx.query<{ version: string | null }>(`SELECT ${vt.column}::text AS version FROM ${vt.table} LIMIT 2`)
  if (rows.length !== 1 || rows[0]!.version === null || rows[0]!.version === '') {
    const what = rows.length === 0 ? 'is empty' : rows.length > 1 ? 'has more than one row' : `has no value in ${vt.column}`
    throw new PgcrewError('MIGRATE_VERSION_UNKNOWN', `the version table ${vt.table} ${what}, so the schema's version is unknown; put the right version in its single row and run again`)
  }
  return rows[0]!.version.trim()
}

/**
 * Records `version` unless the script already did (piwheels' scripts set it themselves); creates
 * the table on first use. Runs in the migration's transaction, so it commits with the scripts.
 */
export async function recordVersion(tx: Transaction, vt: VersionTable, version: string): Promise<void> {
  if (!(await tableExists(tx, vt))) {
    await tx.query(`CREATE TABLE ${vt.table} (${vt.column} text NOT NULL)`)
  }
  const { rows } = await tx.query<{ version: string | null }>(`SELECT ${vt.column}::text AS version FROM ${vt.table}`)
  if (rows.length === 0) await tx.query(`INSERT INTO ${vt.table} (${vt.column}) VALUES ($1)`, [version])
  else if (rows.length > 1 || rows[0]!.version?.trim() !== version) await tx.query(`UPDATE ${vt.table} SET ${vt.column} = $1`, [version])
}
