// store.table<Row>(name): CRUD on one of the application's tables, without an ORM. Statements are
// built from the catalog's column list (so a misspelt column is an error naming the real ones) and
// every value is a parameter.
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError } from '../errors/database-error.ts'
import { qname } from '../toolkit/quote.ts'
import type { Database } from '../database/database.ts'
import { copyRows, copyRowsReturning } from './store-copy.ts'
import { checkColumns, currentTableInfo, encodeValue, entriesOf, invalidValue, orderBySql, whereSql, wholeNumber, type StoreColumn, type TableInfo } from './store-catalog.ts'

/** Column → value to match: `null` is IS NULL, an array is IN (for array and JSON columns, the value itself). */
export type Where<Row> = { [K in keyof Row]?: Row[K] | readonly Row[K][] | null }

/** Options of `find` and `all`; every field is optional. */
export interface FindOptions {
  /** `'name'`, `'name desc'`, `'-name'` or a list of them. Default: no order (the server's). */
  orderBy?: string | readonly string[]
  limit?: number
  offset?: number
}

// The most parameters one statement may carry (the protocol counts them in 16 bits).
const MAX_PARAMETERS = 65_535

function isValueError(error: unknown): error is DatabaseError {
  return error instanceof DatabaseError && (error.code.startsWith('22') || error.code === '42804' || error.code === '428C9')
}

/** Wrap what the server says about a value that cannot be stored (class 22, a type mismatch) as STORE_INVALID_VALUE. */
function valueError(info: TableInfo, what: string, error: unknown, column?: StoreColumn): unknown {
  if (!isValueError(error)) return error
  const named = column ?? (error.column ? info.byName.get(error.column) : undefined)
  return invalidValue(info, named, `${what}: cannot store the value${named ? ` of ${info.name}.${named.name} (${named.type})` : ` in ${info.name}`}: ${error.message}`, error)
}

/** A table of the application's, as `store.table<Row>(name)` returns it. */
export class StoreTable<Row extends Record<string, unknown> = Record<string, unknown>> {
  readonly name: string
  readonly #db: Database
  readonly #info: () => Promise<TableInfo>
  readonly #copyThreshold: number

  constructor(db: Database, name: string, info: () => Promise<TableInfo>, copyThreshold: number) {
    this.name = name
    this.#db = db
    this.#info = info
    this.#copyThreshold = copyThreshold
  }

  /** The table's columns, as read from the catalog (once per store). */
  async columns(): Promise<readonly StoreColumn[]> {
    return (await this.#info()).columns
  }

  /** Insert one row; resolves to it as stored (generated ids and defaults filled in). */
  async add(row: Partial<Row>): Promise<Row> {
    const info = await this.#info()
    const values: unknown[] = []
    const text = insertSql(info, [row], values, `${this.name}.add()`)
    try {
      return (await this.#db.query<Row>(text, values)).rows[0]!
    } catch (error) {
      throw valueError(info, `${this.name}.add()`, error, isValueError(error) ? await this.#badColumn(info, row) : undefined)
    }
  }

  /**
   * Insert rows in one transaction; resolves to them as stored, in input order (with `{ returning:
   * false }`: to how many, without reading them back). Small batches go as multi-row INSERTs, large
   * ones (`copyThreshold` rows and up, the same columns in every row) through COPY; rows to return
   * then need a one-column primary key, and only what the server decided (ids, defaults) is read back.
   */
  addMany(rows: readonly Partial<Row>[], options?: { returning?: true }): Promise<Row[]>
  addMany(rows: readonly Partial<Row>[], options: { returning: false }): Promise<number>
  async addMany(rows: readonly Partial<Row>[], options: { returning?: boolean } = {}): Promise<Row[] | number> {
    const what = `${this.name}.addMany()`
    if (!Array.isArray(rows)) throw new PgcrewError('INVALID_OPTION', `${what} takes an array of rows`)
    const returning = options.returning ?? true
    if (rows.length === 0) return returning ? [] : 0
    const info = await this.#info()
    try {
      return await this.#db.transaction(async (tx) => {
        if (rows.length >= this.#copyThreshold) {
          // Alone: no statement of the caller's can run in this transaction meanwhile (see copyRowsReturning).
          const copied = await this.#copyMany(info, rows, what, returning, tx.depth === 0)
          if (copied !== undefined) return copied
        }
        const columns = Math.max(1, new Set(rows.flatMap((r) => entriesOf(r, what).map(([k]) => k))).size)
        const perStatement = Math.max(1, Math.min(this.#copyThreshold, Math.floor(MAX_PARAMETERS / columns)))
        const out: Row[] = []
        let count = 0
        for (let i = 0; i < rows.length; i += perStatement) {
          const values: unknown[] = []
          const text = insertSql(info, rows.slice(i, i + perStatement), values, what)
          const result = await this.#db.query<Row>(returning ? text : text.replace(/ RETURNING \*$/, ''), values)
          if (returning) out.push(...result.rows)
          count += result.rowCount ?? 0
        }
        return returning ? out : count
      })
    } catch (error) {
      throw valueError(info, what, error)
    }
  }

  /** COPY the rows (and read them back in input order); undefined when the rows do not suit COPY. */
  async #copyMany(cached: TableInfo, rows: readonly Partial<Row>[], what: string, returning: boolean, alone: boolean): Promise<Row[] | number | undefined> {
    const keys = entriesOf(rows[0], what).map(([k]) => k)
    if (!sameColumns(rows, keys)) return undefined
    // Rows built from what was sent must follow the definition the COPY meets, not the one cached.
    const info = returning ? await currentTableInfo(this.#db, cached) : cached
    checkColumns(info, keys, what)
    refuseGenerated(info, keys, what)
    const columns = keys.map((k) => info.byName.get(k)!)
    if (!returning) return keys.length === 0 ? undefined : copyRows(this.#db, info, columns, rows, what)
    // Rows come back by a key known before the COPY: a one-column primary key, given or from its sequence.
    if (info.primaryKey.length !== 1) return undefined
    const pk = info.byName.get(info.primaryKey[0]!)!
    if (!keys.includes(pk.name) && !pk.sequence) return undefined
    return copyRowsReturning<Row>(this.#db, info, columns, pk, rows, what, alone)
  }

  /** Rows matching `where` (all rows without it). */
  async find(where: Where<Row> = {}, options: FindOptions = {}): Promise<Row[]> {
    const info = await this.#info()
    const what = `${this.name}.find()`
    const values: unknown[] = []
    let text = `SELECT * FROM ${info.sql}${whereSql(info, where, values, what)}${orderBySql(info, options.orderBy, what)}`
    const limit = wholeNumber(options.limit, 'limit', what)
    const offset = wholeNumber(options.offset, 'offset', what)
    if (limit !== undefined) text += ` LIMIT ${limit}`
    if (offset !== undefined) text += ` OFFSET ${offset}`
    return (await this.#db.query<Row>(text, values)).rows
  }

  /** The one row matching `where`, or undefined; more than one is STORE_NOT_UNIQUE (use find). */
  async get(where: Where<Row>): Promise<Row | undefined> {
    const rows = await this.find(where, { limit: 2 })
    if (rows.length > 1) throw new PgcrewError('STORE_NOT_UNIQUE', `${this.name}.get(${JSON.stringify(where)}) matches more than one row; use find() for several, or match on a unique column`)
    return rows[0]
  }

  /** The row whose (one-column) primary key is `id`, or undefined. */
  async getById(id: unknown): Promise<Row | undefined> {
    const info = await this.#info()
    if (info.primaryKey.length !== 1) {
      throw new PgcrewError(
        'STORE_NO_PRIMARY_KEY',
        `${this.name}.getById(): ${info.name} has ${info.primaryKey.length ? `a primary key of ${info.primaryKey.length} columns (${info.primaryKey.join(', ')})` : 'no primary key'}; use get({ … })`,
      )
    }
    return this.get({ [info.primaryKey[0]!]: id } as Where<Row>)
  }

  /** Every row. */
  all(options: FindOptions = {}): Promise<Row[]> {
    return this.find({}, options)
  }

  /** How many rows match `where` (all rows without it). */
  async count(where: Where<Row> = {}): Promise<number> {
    const info = await this.#info()
    const values: unknown[] = []
    const { rows } = await this.#db.query<{ n: string }>(`SELECT count(*) AS n FROM ${info.sql}${whereSql(info, where, values, `${this.name}.count()`)}`, values)
    return Number(rows[0]!.n)
  }

  /** Delete the rows matching `where` (which must name a column: `clear()` deletes all); resolves to how many. */
  async remove(where: Where<Row>): Promise<number> {
    const info = await this.#info()
    const what = `${this.name}.remove()`
    if (entriesOf(where, what).length === 0) throw new PgcrewError('INVALID_OPTION', `${what} needs a where object naming at least one column; to delete every row, call clear()`)
    const values: unknown[] = []
    return (await this.#db.query(`DELETE FROM ${info.sql}${whereSql(info, where, values, what)}`, values)).rowCount ?? 0
  }

  /** Delete every row; resolves to how many there were. */
  async clear(): Promise<number> {
    const info = await this.#info()
    return (await this.#db.query(`DELETE FROM ${info.sql}`)).rowCount ?? 0
  }

  /** Set `values` on the rows matching `where` (which must name a column); resolves to them as stored. */
  async update(where: Where<Row>, values: Partial<Row>): Promise<Row[]> {
    const info = await this.#info()
    const what = `${this.name}.update()`
    if (entriesOf(where, what).length === 0) throw new PgcrewError('INVALID_OPTION', `${what} needs a where object naming at least one column`)
    const set = entriesOf(values, what)
    if (set.length === 0) throw new PgcrewError('INVALID_OPTION', `${what} needs at least one column to set`)
    checkColumns(
      info,
      set.map(([k]) => k),
      what,
    )
    refuseGenerated(
      info,
      set.map(([k]) => k),
      what,
    )
    const params: unknown[] = []
    const assignments = set.map(([k, v]) => (params.push(encodeValue(info, info.byName.get(k)!, v, what)), `${qname(k)} = $${params.length}`))
    const text = `UPDATE ${info.sql} SET ${assignments.join(', ')}${whereSql(info, where, params, what)} RETURNING *`
    try {
      return (await this.#db.query<Row>(text, params)).rows
    } catch (error) {
      throw valueError(info, what, error)
    }
  }

  /**
   * The row with these `key` columns, inserted with `values` when there is none: one atomic INSERT …
   * ON CONFLICT DO NOTHING RETURNING, then a SELECT when another caller got there first. The key
   * columns need a unique constraint (or primary key) of exactly those columns.
   */
  async getOrCreate(key: Partial<Row>, values: Partial<Row> = {}): Promise<Row> {
    const info = await this.#info()
    const what = `${this.name}.getOrCreate()`
    const keyEntries = entriesOf(key, what)
    if (keyEntries.length === 0) throw new PgcrewError('INVALID_OPTION', `${what} needs a key naming at least one column`)
    const nullKey = keyEntries.find(([, v]) => v === null)
    if (nullKey) throw invalidValue(info, info.byName.get(nullKey[0]), `${what}: key column "${nullKey[0]}" is null, and NULL never matches an existing row`)
    checkColumns(
      info,
      keyEntries.map(([k]) => k),
      what,
    )
    const params: unknown[] = []
    const insert = insertSql(info, [{ ...values, ...key }], params, what).replace(/ RETURNING \*$/, ` ON CONFLICT (${keyEntries.map(([k]) => qname(k)).join(', ')}) DO NOTHING RETURNING *`)
    // A row whose inserter rolled back after we waited on it is gone again: try the insert once more.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const inserted = await this.#db.query<Row>(insert, params)
        if (inserted.rows[0]) return inserted.rows[0]
      } catch (error) {
        if (error instanceof DatabaseError && error.code === '42P10') {
          throw new PgcrewError(
            'STORE_NO_UNIQUE_KEY',
            `${what}: ${info.name} has no unique constraint on (${keyEntries.map(([k]) => k).join(', ')}); add one (the key must identify one row), or use a key that has one`,
            { cause: error },
          )
        }
        throw valueError(info, what, error, isValueError(error) ? await this.#badColumn(info, { ...values, ...key }) : undefined)
      }
      const found = await this.get(key as Where<Row>)
      if (found) return found
    }
    throw new PgcrewError('STORE_CONFLICT', `${what}: the row for ${JSON.stringify(key)} kept appearing and vanishing (concurrent inserts rolled back); try again`)
  }

  /** After a failed insert: the first column whose value its type refuses (one cast per column, only on this error path). */
  async #badColumn(info: TableInfo, row: object): Promise<StoreColumn | undefined> {
    for (const [name, value] of Object.entries(row)) {
      const column = info.byName.get(name)
      if (!column || value === undefined || value === null) continue
      try {
        await this.#db.query(`SELECT $1::${column.type}`, [encodeValue(info, column, value, '')])
      } catch (error) {
        // Inside the caller's failed transaction every statement fails: then nothing can be said.
        return isValueError(error) ? column : undefined
      }
    }
    return undefined
  }
}

/** Every row names exactly `keys` (undefined counts as not named): checked without allocating per row, as it runs for every row of a large batch. */
function sameColumns(rows: readonly object[], keys: readonly string[]): boolean {
  const wanted = new Set(keys)
  for (const row of rows) {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) return false
    let named = 0
    for (const k in row) {
      if (!Object.hasOwn(row, k) || (row as Record<string, unknown>)[k] === undefined) continue
      if (!wanted.has(k)) return false
      named++
    }
    if (named !== wanted.size) return false
  }
  return true
}

function refuseGenerated(info: TableInfo, names: readonly string[], what: string): void {
  const generated = names.map((n) => info.byName.get(n)!).find((c) => c.generated)
  if (generated) throw invalidValue(info, generated, `${what}: ${info.name}.${generated.name} is a generated column; it cannot be written, leave it out`)
}

/** A multi-row INSERT … RETURNING *; a column a row leaves out gets its DEFAULT. */
function insertSql(info: TableInfo, rows: readonly object[], values: unknown[], what: string): string {
  const names = [...new Set(rows.flatMap((r) => entriesOf(r, what).map(([k]) => k)))]
  checkColumns(info, names, what)
  refuseGenerated(info, names, what)
  if (names.length === 0) return `INSERT INTO ${info.sql} (${qname(info.columns[0]!.name)}) VALUES ${rows.map(() => '(DEFAULT)').join(', ')} RETURNING *`
  const columns = names.map((n) => info.byName.get(n)!)
  const overriding = columns.some((c) => c.identityAlways) ? ' OVERRIDING SYSTEM VALUE' : ''
  const tuples = rows.map((row) => {
    const r = row as Record<string, unknown>
    return `(${columns.map((c) => (r[c.name] === undefined ? 'DEFAULT' : (values.push(encodeValue(info, c, r[c.name], what)), `$${values.length}`))).join(', ')})`
  })
  return `INSERT INTO ${info.sql} (${names.map((n) => qname(n)).join(', ')})${overriding} VALUES ${tuples.join(', ')} RETURNING *`
}
