import { readFile } from 'node:fs/promises'
import { parse } from 'yaml'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { qname, quoteIdent } from '../toolkit/quote.ts'
import type { Transaction } from '../database/transaction.ts'

/** Seed data: table name (optionally `schema.table`) → the rows to insert, column → value. */
export type SeedData = Record<string, Array<Record<string, unknown>>>

/**
 * Who loads the data, for its errors: migrate's seed (MIGRATE_SEED) or the record store's fixtures
 * (STORE_FIXTURES), which share this code so that YAML/JSON reading and FK ordering exist once.
 */
export interface SeedUse {
  code: string
  /** What the data is called in messages: `seed`, `fixture`. */
  noun: string
  /** Why a table may be missing, and what to do. */
  missingTable: string
  /** What loading a table is called: `seeding`, `loading fixtures into`. */
  loading: string
}

const MIGRATE_USE: SeedUse = { code: 'MIGRATE_SEED', noun: 'seed', missingTable: 'does not exist after the create script; fix the name in the seed file', loading: 'seeding' }

/** Options of {@link insertSeed}; every field is optional. */
export interface InsertSeedOptions {
  /** Skip rows whose key (any unique constraint) is already there: ON CONFLICT DO NOTHING. Default false. */
  onlyIfMissing?: boolean
  use?: SeedUse
}

/** Reads seed data from YAML or JSON (JSON is YAML too), and checks its shape. */
export async function loadSeed(source: string | SeedData, use: SeedUse = MIGRATE_USE): Promise<SeedData> {
  if (typeof source !== 'string') return checkSeed(source, `the ${use.noun} option`, use)
  let text: string
  try {
    text = await readFile(source, 'utf8')
  } catch (error) {
    throw new PgcrewError(use.code, `cannot read the ${use.noun} file ${source}: ${(error as Error).message}`, { cause: error })
  }
  let data: unknown
  try {
    // The core schema keeps dates and the like as strings; PostgreSQL converts them by column type.
    data = parse(text, { schema: 'core' })
  } catch (error) {
    throw new PgcrewError(use.code, `the ${use.noun} file ${source} is not valid YAML or JSON: ${(error as Error).message}`, { cause: error })
  }
  return checkSeed(data, source, use)
}

function checkSeed(data: unknown, where: string, use: SeedUse): SeedData {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (!isObject(data)) throw new PgcrewError(use.code, `${where}: expected table names at the top level, each holding a list of rows`)
  for (const [table, rows] of Object.entries(data)) {
    if (!Array.isArray(rows) || !rows.every(isObject)) {
      throw new PgcrewError(use.code, `${where}: ${table} must hold a list of rows (column: value mappings)`)
    }
  }
  return data as SeedData
}

function tableName(name: string, use: SeedUse): string {
  const parts = name.split('.')
  if (parts.length > 2 || parts.some((p) => p === '')) {
    throw new PgcrewError(use.code, `${use.noun} table "${name}" must be "table" or "schema.table"`)
  }
  return qname(...parts)
}

/** Parents before children, in file order otherwise; tables in a cycle keep file order (Kahn). */
function dependencyOrder(tables: string[], edges: Array<{ child: string; parent: string }>): string[] {
  const order: string[] = []
  const pending = new Set(tables)
  while (pending.size > 0) {
    const ready = [...pending].find((t) => !edges.some((e) => e.child === t && e.parent !== t && pending.has(e.parent)))
    const next = ready ?? [...pending][0]!
    order.push(next)
    pending.delete(next)
  }
  return order
}

/**
 * Inserts seed rows in the caller's transaction. Tables go in foreign-key order (and deferrable
 * constraints are deferred, for cycles); serial and identity sequences are moved past the seeded
 * ids so the application's first insert does not collide. Returns rows inserted per table.
 */
export async function insertSeed(tx: Transaction, data: SeedData, onTable?: (table: string, rows: number) => void, options: InsertSeedOptions = {}): Promise<Record<string, number>> {
  const use = options.use ?? MIGRATE_USE
  const conflict = options.onlyIfMissing ? ' ON CONFLICT DO NOTHING' : ''
  const names = Object.keys(data)
  const oids = new Map<string, string>()
  for (const name of names) {
    const { rows } = await tx.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [tableName(name, use)])
    if (rows[0]?.oid == null) throw new PgcrewError(use.code, `${use.noun} table ${name} ${use.missingTable}`)
    oids.set(name, rows[0].oid)
  }
  const byOid = new Map([...oids].map(([name, oid]) => [oid, name]))
  const { rows: fks } = await tx.query<{ child: string; parent: string }>(
    `SELECT conrelid::text AS child, confrelid::text AS parent FROM pg_constraint
      WHERE contype = 'f' AND conrelid = ANY($1::oid[]) AND confrelid = ANY($1::oid[])`,
    [[...oids.values()]],
  )
  const edges = fks.map((e) => ({ child: byOid.get(e.child)!, parent: byOid.get(e.parent)! }))
  await tx.query('SET CONSTRAINTS ALL DEFERRED')

  const counts: Record<string, number> = {}
  for (const name of dependencyOrder(names, edges)) {
    const table = tableName(name, use)
    const rows = data[name]!
    let inserted = 0
    const { rows: sequences } = await tx.query<{ column: string; seq: string }>(
      `SELECT attname AS column, pg_get_serial_sequence($1, attname) AS seq FROM pg_attribute
        WHERE attrelid = $2::oid AND attnum > 0 AND NOT attisdropped AND pg_get_serial_sequence($1, attname) IS NOT NULL`,
      [table, oids.get(name)],
    )
    // Consecutive rows with the same columns go in one statement; each row keeps its own column
    // list so a column it leaves out gets its default, not NULL.
    for (let i = 0; i < rows.length;) {
      const columns = Object.keys(rows[i]!)
      const key = JSON.stringify(columns)
      let j = i + 1
      while (j < rows.length && JSON.stringify(Object.keys(rows[j]!)) === key) j++
      const batch = rows.slice(i, j)
      const list = columns.map(quoteIdent).join(', ')
      try {
        if (columns.length === 0) {
          for (let k = 0; k < batch.length; k++) inserted += (await tx.query(`INSERT INTO ${table} DEFAULT VALUES${conflict}`)).rowCount ?? 0
        } else {
          // json_populate_recordset lets PostgreSQL convert each value by its column's type (arrays, jsonb, dates…).
          const result = await tx.query(`INSERT INTO ${table} (${list}) OVERRIDING SYSTEM VALUE SELECT ${list} FROM json_populate_recordset(NULL::${table}, $1::json)${conflict}`, [
            JSON.stringify(batch),
          ])
          inserted += result.rowCount ?? 0
        }
      } catch (error) {
        throw new PgcrewError(use.code, `${use.loading} ${name} (rows ${i + 1}–${j}) failed: ${(error as Error).message}; nothing was changed`, { cause: error })
      }
      // Rows with explicit ids move the sequence on before rows that take the next value.
      for (const { column, seq } of sequences.filter((s) => columns.includes(s.column))) {
        await tx.query(`SELECT setval($1::regclass, max(${quoteIdent(column)})) FROM ${table} HAVING max(${quoteIdent(column)}) IS NOT NULL`, [seq])
      }
      i = j
    }
    counts[name] = inserted
    onTable?.(name, inserted)
  }
  return counts
}
