// What the store knows of a table: its columns and primary key, read from the catalog once per
// Store and table, and the checks every statement built from them goes through (unknown columns,
// values that cannot be sent). Every value travels as a parameter; names only ever quoted.
import { closest } from '../errors/did-you-mean.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { qname } from '../toolkit/quote.ts'
import { tableParts } from '../toolkit/table-name.ts'
import type { Database } from '../database/database.ts'

/** A column of a store table, as the catalog describes it. */
export interface StoreColumn {
  readonly name: string
  /** `format_type` of the column: `integer`, `character varying(20)`, `jsonb`, `text[]`… */
  readonly type: string
  readonly isArray: boolean
  readonly isJson: boolean
  /** GENERATED ALWAYS AS IDENTITY: an explicit value needs OVERRIDING SYSTEM VALUE. */
  readonly identityAlways: boolean
  /** GENERATED ALWAYS AS (…) STORED: never written. */
  readonly generated: boolean
  /** The serial or identity sequence behind the column, if any. */
  readonly sequence: string | null
  /** The column's type (pg_type oid): which parser node-postgres picks for it. */
  readonly typeOid: number
  /**
   * How a value COPY stored here reads back, when the client can tell: the server's output text is
   * then the text sent (`'same'`; text, unconstrained varchar, json), or follows from it by a fixed
   * rule (integers, float8, boolean, uuid). Null for every other type (and for domains, varchar(n)).
   */
  readonly echo: Echo | null
  /**
   * Left out of an INSERT, every row of one transaction gets the same value: no default (NULL, and
   * not a domain's), a constant, or the transaction's time (now(), CURRENT_TIMESTAMP, CURRENT_DATE…).
   */
  readonly sameDefault: boolean
  /** The column's default draws from its sequence (serial, identity) counting up by 1 without cycling. */
  readonly countsUp: boolean
}

/** Types whose output text the client can tell from the value it sent (see StoreColumn.echo). */
export type Echo = 'same' | 'integer' | 'float8' | 'boolean' | 'uuid'

const ECHO: ReadonlyMap<number, Echo> = new Map([
  [25, 'same'], // text
  [114, 'same'], // json: stored as written
  [20, 'integer'],
  [21, 'integer'],
  [23, 'integer'],
  [701, 'float8'],
  [16, 'boolean'],
  [2950, 'uuid'],
])
const VARCHAR = 1043

const TRANSACTION_TIME = /^(?:now\(\)|transaction_timestamp\(\)|(?:CURRENT_TIMESTAMP|CURRENT_TIME|LOCALTIMESTAMP|LOCALTIME)(?:\(\d\))?|CURRENT_DATE)$/
// A literal with its type (how pg_get_expr writes a Const), a number, a boolean.
const CONSTANT = /^(?:'(?:[^']|'')*'::[\w ."]+(?:\[\])*|-?\d+(?:\.\d+)?|true|false|NULL::[\w ."]+(?:\[\])*)$/

function sameDefaultOf(expr: string | null, isDomain: boolean, identity: string, generated: string): boolean {
  if (identity !== '' || generated !== '') return false
  if (expr === null) return !isDomain
  return TRANSACTION_TIME.test(expr) || CONSTANT.test(expr)
}

function echoOf(oid: number, typmod: number): Echo | null {
  if (oid === VARCHAR) return typmod < 0 ? 'same' : null // varchar(n) cuts trailing spaces off a long value
  return ECHO.get(oid) ?? null
}

export interface TableInfo {
  /** The name as the caller gave it (for messages). */
  readonly name: string
  /** pg_class oid, as text. */
  readonly oid: string
  /** What the catalog said when this was read (see currentTableInfo). */
  readonly signature: string
  /** The table quoted for SQL, schema included: `"public"."items"`. */
  readonly sql: string
  /** Schema and table, unquoted (for COPY). */
  readonly parts: readonly [string, string]
  readonly columns: readonly StoreColumn[]
  readonly byName: ReadonlyMap<string, StoreColumn>
  readonly primaryKey: readonly string[]
  /**
   * A row COPY stores keeps the values it was given: an ordinary table with no INSERT trigger
   * (before or after, row or statement: each could change them) when the catalog was read.
   */
  readonly storesAsGiven: boolean
}

/** Read a table's columns and primary key; an unknown table is STORE_UNKNOWN_TABLE, naming the tables there are. */
export async function readTableInfo(db: Database, name: string): Promise<TableInfo> {
  const parts = tableParts(name, 'store.table() name')
  const { rows: found } = await db.query<{ oid: string; sql: string; schema: string; table: string }>(
    `SELECT c.oid::text AS oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql, n.nspname AS schema, c.relname AS table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')`,
    [qname(...parts)],
  )
  if (found.length === 0) throw await unknownTable(db, name)
  const { oid, sql, schema, table } = found[0]!
  return tableInfoOf(name, oid, sql, [schema, table], (await db.query<CatalogRow>(COLUMNS_SQL, [oid, sql])).rows)
}

/**
 * The table's info as the catalog has it now, in the caller's transaction, which from then on holds
 * a lock that keeps the table's definition (an ALTER waits for it): `info` itself when nothing
 * changed since it was read, else a fresh one. What addMany trusts to build rows without reading
 * them back (types, defaults, triggers) must be the definition the COPY then meets.
 */
export async function currentTableInfo(db: Database, info: TableInfo): Promise<TableInfo> {
  const { rows } = await db.query<CatalogRow>(`SELECT q.* FROM (${COLUMNS_SQL}) AS q LEFT JOIN (SELECT FROM ${info.sql} LIMIT 0) AS locked ON true`, [info.oid, info.sql])
  return JSON.stringify(rows) === info.signature ? info : tableInfoOf(info.name, info.oid, info.sql, info.parts, rows)
}

interface CatalogRow {
  name: string
  type: string
  type_oid: number
  typmod: number
  is_array: boolean
  is_json: boolean
  identity: string
  generated: string
  pk: boolean
  seq: string | null
  default_expr: string | null
  is_domain: boolean
  user_function: boolean
  counts_up: boolean | null
  as_given: boolean
}

// Every column of table $1 (its quoted name $2), and on each row whether a row COPY stores keeps
// its values: an ordinary table and no INSERT trigger (tgtype bit 4) that may fire, before (changing
// NEW) or after (updating the rows, row or statement level). A default that calls a function of a
// user's (pg_depend records those, never built-in ones) is not taken as the same in every row, even
// if it prints as now() under the search_path.
const COLUMNS_SQL = `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::int AS type_oid, a.atttypmod AS typmod, t.typcategory = 'A' AS is_array,
            a.atttypid IN ('json'::regtype, 'jsonb'::regtype) AS is_json, a.attidentity AS identity, a.attgenerated AS generated,
            coalesce(a.attnum = ANY (i.indkey), false) AS pk, pg_get_serial_sequence($2, a.attname) AS seq,
            pg_get_expr(d.adbin, d.adrelid) AS default_expr, t.typtype = 'd' AS is_domain,
            EXISTS (SELECT 1 FROM pg_depend p WHERE p.classid = 'pg_attrdef'::regclass AND p.objid = d.oid AND p.refclassid = 'pg_proc'::regclass) AS user_function,
            (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) = format('nextval(%L::regclass)', pg_get_serial_sequence($2, a.attname)::regclass))
              AND (SELECT q.seqincrement = 1 AND NOT q.seqcycle FROM pg_sequence q WHERE q.seqrelid = pg_get_serial_sequence($2, a.attname)::regclass) AS counts_up,
            (SELECT c.relkind = 'r' FROM pg_class c WHERE c.oid = $1::oid)
              AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = $1::oid AND g.tgtype & 4 = 4 AND NOT g.tgisinternal AND g.tgenabled <> 'D') AS as_given
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`

function tableInfoOf(name: string, oid: string, sql: string, parts: readonly [string, string], rows: CatalogRow[]): TableInfo {
  const columns = rows.map((r): StoreColumn =>
    Object.freeze({
      name: r.name,
      type: r.type,
      isArray: r.is_array,
      isJson: r.is_json,
      identityAlways: r.identity === 'a',
      generated: r.generated === 's',
      sequence: r.seq,
      typeOid: r.type_oid,
      echo: echoOf(r.type_oid, r.typmod),
      sameDefault: !r.user_function && sameDefaultOf(r.default_expr, r.is_domain, r.identity, r.generated),
      countsUp: r.counts_up === true,
    }),
  )
  return Object.freeze({
    name,
    oid,
    sql,
    parts,
    columns,
    byName: new Map(columns.map((c) => [c.name, c])),
    primaryKey: rows.filter((r) => r.pk).map((r) => r.name),
    storesAsGiven: rows.length > 0 && rows[0]!.as_given,
    signature: JSON.stringify(rows),
  })
}

async function unknownTable(db: Database, name: string): Promise<PgcrewError> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT CASE WHEN pg_table_is_visible(c.oid) THEN '' ELSE quote_ident(n.nspname) || '.' END || quote_ident(c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1 LIMIT 200`,
  )
  const tables = rows.map((r) => r.name)
  const guess = closest(name, tables)
  return new PgcrewError(
    'STORE_UNKNOWN_TABLE',
    `store.table(${JSON.stringify(name)}): no such table${guess ? ` (did you mean "${guess}"?)` : ''}; ${tables.length ? `tables here: ${tables.join(', ')}` : 'this database has no tables yet'} — create it first (migrate), or name its schema ("schema.table")`,
    { details: { table: name, tables } },
  )
}

/** Every name must be a column of the table, else STORE_UNKNOWN_COLUMN naming them and the table's columns. */
export function checkColumns(info: TableInfo, names: Iterable<string>, where: string): void {
  const unknown = [...names].filter((n) => !info.byName.has(n))
  if (unknown.length === 0) return
  const all = info.columns.map((c) => c.name)
  const guesses = unknown.map((u) => closest(u, all)).filter((g): g is string => g !== undefined)
  throw new PgcrewError(
    'STORE_UNKNOWN_COLUMN',
    `${where}: ${info.name} has no column${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `"${u}"`).join(', ')}${guesses.length ? ` (did you mean ${guesses.map((g) => `"${g}"`).join(', ')}?)` : ''}; its columns: ${all.join(', ')}`,
    { details: { table: info.name, unknown, columns: all } },
  )
}

/** A value as a query parameter for `column`: JSON columns get JSON text (so arrays stay JSON arrays). */
export function encodeValue(info: TableInfo, column: StoreColumn, value: unknown, where: string): unknown {
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw invalidValue(info, column, `${where}: ${info.name}.${column.name} cannot store a ${typeof value}`)
  }
  if (!column.isJson || value === null) return value
  try {
    const text = JSON.stringify(value)
    if (text === undefined) throw new TypeError(`${typeof value} has no JSON form`)
    return text
  } catch (error) {
    throw invalidValue(info, column, `${where}: ${info.name}.${column.name} (${column.type}) needs a value with a JSON form: ${(error as Error).message}`, error)
  }
}

export function invalidValue(info: TableInfo, column: StoreColumn | undefined, message: string, cause?: unknown): PgcrewError {
  return new PgcrewError('STORE_INVALID_VALUE', message, { cause, details: { table: info.name, ...(column ? { column: column.name, type: column.type } : {}) } })
}

/** The defined entries of a row or where object, checked to be a plain object. */
export function entriesOf(value: unknown, where: string): Array<[string, unknown]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PgcrewError('INVALID_OPTION', `${where} takes an object of column → value, not ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`)
  }
  return Object.entries(value).filter(([, v]) => v !== undefined)
}

/**
 * ` WHERE …` for a where object (empty for none): `null` is IS NULL, an array is IN (`= ANY`), except
 * for array and JSON columns, where an array is the value itself. Parameters are appended to `values`.
 */
export function whereSql(info: TableInfo, where: object | undefined, values: unknown[], what: string): string {
  if (where === undefined) return ''
  entriesOf(where, what)
  const entries = Object.entries(where)
  if (entries.some(([, v]) => v === undefined)) refuseUndefined(info, where, what)
  checkColumns(
    info,
    entries.map(([k]) => k),
    what,
  )
  const terms = entries.map(([name, value]) => {
    const column = info.byName.get(name)!
    const ident = qname(name)
    if (value === null) return `${ident} IS NULL`
    if (Array.isArray(value) && !column.isArray && !column.isJson) {
      values.push(value.filter((v) => v !== null).map((v) => encodeValue(info, column, v, what)))
      const any = `${ident} = ANY ($${values.length})`
      return value.includes(null) ? `(${any} OR ${ident} IS NULL)` : any
    }
    values.push(encodeValue(info, column, value, what))
    return `${ident} = $${values.length}`
  })
  return terms.length ? ` WHERE ${terms.join(' AND ')}` : ''
}

function refuseUndefined(info: TableInfo, where: object, what: string): never {
  const names = Object.entries(where)
    .filter(([, v]) => v === undefined)
    .map(([k]) => k)
  throw invalidValue(
    info,
    info.byName.get(names[0]!),
    `${what}: ${names.map((n) => `"${n}"`).join(', ')} ${names.length > 1 ? 'are' : 'is'} undefined; use null to match NULL, or leave the column out`,
  )
}

/** ` ORDER BY …` from `'col'`, `'col desc'`, `'-col'` or a list of them, checked against the columns. */
export function orderBySql(info: TableInfo, orderBy: string | readonly string[] | undefined, what: string): string {
  if (orderBy === undefined) return ''
  const items = typeof orderBy === 'string' ? [orderBy] : orderBy
  const terms = items.map((item) => {
    const m = typeof item === 'string' ? /^(-)?\s*(.+?)(?:\s+(asc|desc))?$/i.exec(item.trim()) : null
    if (!m) throw new PgcrewError('INVALID_OPTION', `${what}: orderBy takes column names ("name", "name desc" or "-name"), not ${JSON.stringify(item)}`)
    checkColumns(info, [m[2]!], `${what} orderBy`)
    return `${qname(m[2]!)}${m[1] || m[3]?.toLowerCase() === 'desc' ? ' DESC' : ''}`
  })
  return terms.length ? ` ORDER BY ${terms.join(', ')}` : ''
}

/** A whole number ≥ 0 for limit/offset, or undefined. */
export function wholeNumber(value: unknown, name: string, what: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new PgcrewError('INVALID_OPTION', `${what}: ${name} takes a whole number ≥ 0, not ${JSON.stringify(value)}`)
  return value
}

/**
 * JSON text for a jsonb value (config values, messages, event data); STORE_INVALID_VALUE for what JSON
 * cannot hold faithfully (undefined, a function, a BigInt, NaN or Infinity, which JSON.stringify
 * would quietly turn into null, or a cycle).
 */
export function toJson(value: unknown, what: string): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError(`${v} has no JSON form`)
      return v
    })
  } catch (error) {
    throw new PgcrewError('STORE_INVALID_VALUE', `${what}: the value cannot be stored as JSON: ${(error as Error).message}`, { cause: error })
  }
  if (text === undefined) throw new PgcrewError('STORE_INVALID_VALUE', `${what}: ${typeof value} cannot be stored as JSON; give a string, number, boolean, null, array or object`)
  return text
}
