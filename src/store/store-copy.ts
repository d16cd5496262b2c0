// addMany's COPY path. The rows are encoded as COPY text into one string per ~64 KB chunk (no string
// or array per row or field, which is what made the generic copyFrom encoder the cost), streamed
// into the table on the transaction's connection. Rows to return are built as they are encoded:
// where the client can tell the text the server will write for a value (see echoText), the row gets
// the column's parser applied to that text, as node-postgres would apply it to the server's. Only
// what the server decided is read back: the keys a sequence drew (known without a read when nobody
// else drew meanwhile), defaults (once, when every row of a transaction gets the same), values the
// client cannot tell, and everything in a table whose INSERT trigger may change a row.
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import pg from 'pg'
import { mapDatabaseError } from '../errors/database-error.ts'
import { qname } from '../toolkit/quote.ts'
import { copyFrom } from '../toolkit/copy.ts'
import type { Database } from '../database/database.ts'
import { copyOut, describeRows, parseRows, type RowShape } from './store-copy-read.ts'
import { encodeValue, type Echo, type StoreColumn, type TableInfo } from './store-catalog.ts'

// node-postgres' own serialisation of a parameter (Date, arrays as '{…}', objects as JSON, Buffers):
// a value goes into COPY exactly as it would go into the INSERT path's parameters.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue(value: unknown): unknown }

const CHUNK = 65_536
// Rows per slice of a COPY with rows to return (see copyRowsReturning); a slice's ids stand in its read back's query.
const SLICE = 10_000
// Beyond this many runs of ids in a slice (a sequence that skips, other sessions taking ids meanwhile), its read back names them in an array.
const MAX_RUNS = 20
const NEEDS_ESCAPE = /[\\\n\r\t]/
const ESCAPES = /[\\\n\r\t]/g
const escapeChar = (c: string): string => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t')

/** The text a value goes into COPY as, before COPY's escapes; null for NULL. */
function rawText(info: TableInfo, column: StoreColumn, value: unknown, what: string): string | null {
  const v = encodeValue(info, column, value, what)
  if (v === null || v === undefined) return null
  if (typeof v === 'string') return v
  if (typeof v === 'number') return String(v)
  const p = prepareValue(v)
  if (p === null || p === undefined) return null
  return Buffer.isBuffer(p) ? `\\x${p.toString('hex')}` : String(p)
}

const INTEGER = /^(?:0|-?[1-9][0-9]*)$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Node 20 has String.prototype.isWellFormed; TypeScript's ES2022 lib does not declare it.
const wellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed()

/**
 * The text the server will write for a value sent as `raw` into a column of kind `echo`, when the
 * client can tell (undefined when only the server can). A lone surrogate would reach the server as
 * U+FFFD; -0, a float8 in exponent notation (below 1e-4 or from 1e15: the server writes `1e-05`
 * where JavaScript writes `0.00001`) and every float8 under `extra_float_digits` < 1 (rounded to 15
 * digits) are left to the server.
 */
function echoText(echo: Echo, raw: string | null, value: unknown, floatsExact: boolean): string | null | undefined {
  if (raw === null) return null
  switch (echo) {
    case 'same':
      return wellFormed(raw) ? raw : undefined
    case 'integer':
      return INTEGER.test(raw) ? raw : undefined
    case 'float8': {
      if (!floatsExact || typeof value !== 'number') return undefined
      const size = Math.abs(value)
      return (size >= 1e-4 && size < 1e15) || (value === 0 && !Object.is(value, -0)) || !Number.isFinite(value) ? raw : undefined
    }
    case 'boolean':
      return value === true ? 't' : value === false ? 'f' : undefined
    case 'uuid':
      return UUID.test(raw) ? raw : undefined
  }
}

/**
 * Builds the rows to return while their COPY text is written: each row in the table's column order,
 * the key from `key`, and each copied column whose type can tell (`echo`) parsed from the text the
 * server will write for it, until a value that cannot tell marks its column `unknown` (to be read
 * back, in every row). The other columns stay null until read back.
 */
class RowBuilder {
  readonly unknown: boolean[]
  readonly #parsers: Array<((text: string) => unknown) | undefined>
  constructor(
    readonly shape: RowShape,
    readonly columns: readonly StoreColumn[],
    readonly floatsExact: boolean,
    readonly out: Array<Record<string, unknown>>,
    readonly keyName?: string,
    readonly keyParser?: (text: string) => unknown,
  ) {
    this.unknown = columns.map((c) => !c.echo)
    this.#parsers = columns.map((c) => shape.parserOf.get(c.name))
  }

  /** A new row (its key when given) at the end of `out`. */
  start(key: string | undefined): Record<string, unknown> {
    const row: Record<string, unknown> = { ...this.shape.empty }
    if (key !== undefined) row[this.keyName!] = this.keyParser!(key)
    this.out.push(row)
    return row
  }

  /** Column `c` of `row`, sent as `raw` for `value`. */
  set(row: Record<string, unknown>, c: number, raw: string | null, value: unknown): void {
    const text = echoText(this.columns[c]!.echo!, raw, value, this.floatsExact)
    if (text === undefined) this.unknown[c] = true
    else row[this.columns[c]!.name] = text === null ? null : this.#parsers[c]!(text)
  }

  /** Names of the columns the server decides, or whose values could not all tell. */
  decided(except?: string): string[] {
    const known = new Set(this.columns.filter((_, c) => !this.unknown[c]).map((c) => c.name))
    return this.shape.names.filter((n) => n !== except && !known.has(n))
  }
}

/** COPY text of `rows`' `columns` (then `key(i)` as a last field, when given), one Buffer per ~64 KB; rows `from` to `to` only, when given. */
function* copyText(
  info: TableInfo,
  columns: readonly StoreColumn[],
  rows: readonly Record<string, unknown>[],
  what: string,
  key?: (i: number) => string,
  from = 0,
  to = rows.length,
  builder?: RowBuilder,
  builtKey?: (i: number) => string,
): Generator<Buffer> {
  const last = columns.length - 1
  let chunk = ''
  for (let i = from; i < to; i++) {
    const row = rows[i]!
    const built = builder?.start(builtKey?.(i))
    for (let c = 0; c <= last; c++) {
      const column = columns[c]!
      const value = row[column.name]
      const raw = rawText(info, column, value, what)
      if (built && !builder!.unknown[c]) builder!.set(built, c, raw, value)
      chunk += (raw === null ? '\\N' : NEEDS_ESCAPE.test(raw) ? raw.replace(ESCAPES, escapeChar) : raw) + (c < last || key ? '\t' : '')
    }
    chunk += key ? key(i) + '\n' : '\n'
    if (chunk.length >= CHUNK) {
      yield Buffer.from(chunk)
      chunk = ''
    }
  }
  if (chunk !== '') yield Buffer.from(chunk)
}

/** COPY `rows` (all naming exactly `columns`) into the table; resolves to how many the server stored. */
export async function copyRows(db: Database, info: TableInfo, columns: readonly StoreColumn[], rows: readonly Record<string, unknown>[], what: string): Promise<number> {
  return (await copyFrom(db, info.parts, Readable.from(copyText(info, columns, rows, what)), { columns: columns.map((c) => c.name) })).rows
}

/** Whether the session writes float8 shortest-exact (`extra_float_digits` ≥ 1, the default), as JavaScript does. */
async function floatsWrittenExactly(db: Database, columns: readonly StoreColumn[]): Promise<boolean> {
  if (!columns.some((c) => c.echo === 'float8')) return false
  const { rows } = await db.query<{ digits: number }>(`SELECT current_setting('extra_float_digits')::int AS digits`)
  return rows[0]!.digits >= 1
}

/**
 * COPY `rows` and resolve to them as stored, in input order. The key is the one-column primary key
 * `pk`: given in every row, or (when `columns` leaves it out) from its sequence (drawn by the COPY, or up front).
 *
 * What the server decided (defaults, a value whose stored text the client cannot tell, every column
 * of a table with an INSERT trigger) is read back; the rest the client knows already: the text
 * it sent is the text the server would write (see echoText), and each row's value is the column's
 * parser applied to that text, as node-postgres would apply it to the server's.
 */
export async function copyRowsReturning<Row>(
  db: Database,
  info: TableInfo,
  columns: readonly StoreColumn[],
  pk: StoreColumn,
  rows: readonly Record<string, unknown>[],
  what: string,
  alone: boolean,
): Promise<Row[]> {
  const names = columns.map((c) => c.name)
  if (names.includes(pk.name)) return copyKeyedReturning<Row>(db, info, columns, pk, rows, what)
  // Keys drawn by the COPY are told apart by this transaction's xmin: only when no other statement
  // can run in it meanwhile (addMany opened it; inside the caller's, a concurrent db.query would).
  if (alone && names.length > 0 && info.storesAsGiven && pk.countsUp && pk.echo === 'integer') {
    const drawn = await copyDrawingIds<Row>(db, info, columns, pk, rows, what)
    if (drawn) return drawn
  }
  // Otherwise (a sequence that skips, an INSERT trigger, the caller's transaction): ids taken up front, every column read back.
  const ids = await takeIds(db, pk.sequence!, rows.length)
  const key = `t.${qname(pk.name)}`
  const copied = [...names, pk.name]
  // Slices, so that the client parses one slice's rows while the server stores the next (the two
  // sides work at once instead of in turn). Row i got the i-th smallest id, so within a slice the
  // key's order is the input order; its ids are ours alone (each came from our nextval, and the
  // primary key admits each once). They are whole numbers the server wrote, so they can stand in
  // COPY's query, which takes no parameters.
  const selectSlice = (from: number, to: number): string => {
    const runs = ids.ranges(from, to)
    const within =
      runs.length > MAX_RUNS ? `${key} = ANY ('{${ids.list(from, to).join(',')}}'::bigint[])` : runs.map(([lo, hi]) => (lo === hi ? `${key} = ${lo}` : `${key} BETWEEN ${lo} AND ${hi}`)).join(' OR ')
    return `SELECT t.* FROM ${info.sql} AS t WHERE ${within} ORDER BY ${key}`
  }
  const out: Row[] = []
  await db.withClient(async (client) => {
    const shape = await describeRows(client, `SELECT * FROM ${info.sql}`, readTypes)
    let pending: Promise<Buffer[]> | undefined
    for (let from = 0; from < rows.length; from += SLICE) {
      const to = Math.min(rows.length, from + SLICE)
      const previous = pending && (await pending)
      const copying = copyFrom(client, info.parts, Readable.from(copyText(info, columns, rows, what, ids.at, from, to)), { columns: copied })
      // Marked handled at once: it may fail while the parse below waits for its turns; awaited after it.
      copying.catch(() => {})
      if (previous) {
        try {
          await parseRows(previous, shape, out)
        } catch (error) {
          await copying.catch(() => {})
          throw error
        }
      }
      await copying
      pending = copyOut(client, selectSlice(from, to))
    }
    if (pending) await parseRows(await pending, shape, out)
  })
  return out
}

/**
 * COPY `rows` leaving the key to its sequence, which counts up by 1: a marker id drawn first, then
 * the COPY draws one per row, in input order, each above the last (a session's draws only grow).
 * When the sequence's last value afterwards is the marker plus the number of rows, nobody else drew
 * in between and row i has the marker plus i + 1 (the common case); otherwise the rows are those
 * this transaction wrote above the marker, read back in key order. What the server decided is then
 * read once: from the first row alone when every such column takes the same default in every row
 * of a transaction (now(), a constant), else as runs or row by row. Undefined (nothing written) when
 * the ids would pass 2^53. Only for a transaction of its own: other statements in it could draw ids
 * and write rows with the same xmin meanwhile.
 */
async function copyDrawingIds<Row>(
  db: Database,
  info: TableInfo,
  columns: readonly StoreColumn[],
  pk: StoreColumn,
  rows: readonly Record<string, unknown>[],
  what: string,
): Promise<Row[] | undefined> {
  const names = columns.map((c) => c.name)
  const count = rows.length
  return db.withClient(async (client) => {
    const shape = await describeRows(client, `SELECT * FROM ${info.sql}`, readTypes)
    const [[markerText, digits]] = await askText<[string, string]>(client, `SELECT nextval($1::regclass)::text, current_setting('extra_float_digits')`, [pk.sequence])
    const marker = Number(markerText)
    if (!Number.isSafeInteger(marker + count)) return undefined
    const floatsExact = Number(digits) >= 1
    const out: Array<Record<string, unknown>> = []
    // Built as written, the keys optimistic (marker + i) until the sequence says otherwise.
    const builder = new RowBuilder(shape, columns, floatsExact, out, pk.name, shape.parserOf.get(pk.name)!)
    const keyOf = (i: number): string => String(marker + i)
    // The first row takes the marker as its key (certainly ours: the others are found by its xmin).
    await copyFrom(client, info.parts, Readable.from(copyText(info, columns, rows, what, () => markerText, 0, 1, builder, keyOf)), { columns: [...names, pk.name] })
    if (count > 1) await copyFrom(client, info.parts, Readable.from(copyText(info, columns, rows, what, undefined, 1, count, builder, keyOf)), { columns: names })
    const given = new Set(names)
    const decided = builder.decided(pk.name)
    const fields = decided.map((n) => `t.${qname(n)}`)
    const key = `t.${qname(pk.name)}`
    // The sequence's last value in this session, and what the server decided for the first row.
    const [[lastText, ...first]] = await askText<[string, ...Array<string | null>]>(
      client,
      `SELECT currval($1::regclass)::text${fields.map((f) => `, ${f}`).join('')} FROM (SELECT 1) AS one LEFT JOIN ${info.sql} AS t ON ${key} = ${marker}`,
      [pk.sequence],
    )
    const last = Number(lastText)
    if (count > 1 && last !== marker + count - 1) {
      // Ids drawn meanwhile by other sessions (or by another default of this table): ours are those
      // this transaction (the first row's xmin) wrote from the marker up to the sequence's last value here.
      const asked = [pk.name, ...decided]
      const data = await copyOut(
        client,
        `SELECT ${asked.map((n) => qname(n)).join(', ')} FROM ${info.sql} AS t WHERE ${key} BETWEEN ${marker} AND ${lastText} AND t.xmin = (SELECT xmin FROM ${info.sql} WHERE ${qname(pk.name)} = ${marker}) ORDER BY ${key}`,
      )
      const read = await fillRows(data, shape, asked, out, 0)
      if (read !== count) throw new Error(`${what}: found ${read} of the ${count} rows it copied (ids ${marker} to ${lastText})`)
      return out as Row[]
    }
    if (decided.length === 0) return out as Row[]
    if (decided.every((n) => !given.has(n) && info.byName.get(n)?.sameDefault === true)) {
      const parsers = decided.map((n) => shape.parserOf.get(n)!)
      for (const row of out) {
        for (let c = 0; c < decided.length; c++) row[decided[c]!] = first[c] === null ? null : parsers[c]!(first[c]!)
      }
      return out as Row[]
    }
    const within = `${key} BETWEEN ${marker} AND ${marker + count - 1}`
    if (!(await fillRuns(client, info, shape, decided, key, within, marker, out, 0, count))) {
      await fillRows(await copyOut(client, `SELECT ${fields.join(', ')} FROM ${info.sql} AS t WHERE ${within} ORDER BY ${key}`), shape, decided, out, 0)
    }
    return out as Row[]
  })
}

/** The caller's keys: rows come back matched by them (input order whatever the key's type and spelling). */
async function copyKeyedReturning<Row>(db: Database, info: TableInfo, columns: readonly StoreColumn[], pk: StoreColumn, rows: readonly Record<string, unknown>[], what: string): Promise<Row[]> {
  if (info.storesAsGiven && info.columns.every((c) => columns.includes(c) && c.echo)) {
    // Every column given, each of a type whose text the client can tell: perhaps nothing to read back.
    const shape = await db.withClient((client) => describeRows(client, `SELECT * FROM ${info.sql}`, readTypes))
    const out: Array<Record<string, unknown>> = []
    const builder = new RowBuilder(shape, columns, await floatsWrittenExactly(db, columns), out)
    await copyFrom(db, info.parts, Readable.from(copyText(info, columns, rows, what, undefined, 0, rows.length, builder)), { columns: columns.map((c) => c.name) })
    if (builder.decided().length === 0) return out as Row[]
  } else {
    await copyFrom(db, info.parts, Readable.from(copyText(info, columns, rows, what)), { columns: columns.map((c) => c.name) })
  }
  const keys = rows.map((r) => encodeValue(info, pk, r[pk.name], what))
  return readBack<Row>(db, `SELECT t.* FROM unnest($1::${pk.type}[]) WITH ORDINALITY AS k(key, ord) JOIN ${info.sql} AS t ON t.${qname(pk.name)} = k.key ORDER BY k.ord`, [keys])
}

// At most this many runs of rows sharing what the server decided, in a slice read back as runs.
const MAX_GROUPS = 64
const asText = { getTypeParser: () => (text: string) => text }

/** A statement's rows as arrays of the server's text (parsed by the caller, row by row). */
async function askText<T extends unknown[]>(client: pg.ClientBase, text: string, values?: unknown[]): Promise<T[]> {
  try {
    return (await client.query({ text, values, rowMode: 'array', types: asText } as pg.QueryConfig)).rows as T[]
  } catch (error) {
    throw mapDatabaseError(error)
  }
}

/**
 * Fill in `asked` for a slice (`count` rows from `out[start]`, ids `firstId` on) from runs of
 * consecutive ids whose asked values the server writes alike: one query, a row per run. False (and
 * nothing filled) when they are not a few such runs.
 */
async function fillRuns(
  client: pg.ClientBase,
  info: TableInfo,
  shape: RowShape,
  asked: readonly string[],
  key: string,
  within: string,
  firstId: number,
  out: unknown[],
  start: number,
  count: number,
): Promise<boolean> {
  const fields = asked.map((n) => `t.${qname(n)}`).join(', ')
  // ROW(…)::text compares the columns by the text the server writes for them, which is what a row's
  // values are parsed from: any type groups, and values alike are alike to the client too.
  const text = `SELECT g.lo::text, g.hi::text, g.n::text, ${fields}
    FROM (SELECT min(${key}) AS lo, max(${key}) AS hi, count(*) AS n FROM ${info.sql} AS t WHERE ${within} GROUP BY ROW(${fields})::text LIMIT ${MAX_GROUPS + 1}) AS g
    JOIN ${info.sql} AS t ON ${key} = g.lo`
  const runs = await askText<unknown[]>(client, text)
  if (runs.length > MAX_GROUPS) return false
  let total = 0
  for (const [lo, hi, n] of runs) {
    const first = Number(lo) - firstId
    const last = Number(hi) - firstId
    // A run holds every id from its lowest to its highest (the ids are unique): no other run is inside it.
    if (Number(n) !== last - first + 1 || first < 0 || last >= count) return false
    total += Number(n)
  }
  if (total !== count) return false
  const parsers = asked.map((n) => shape.parserOf.get(n)!)
  for (const run of runs) {
    const first = Number(run[0]) - firstId
    const last = Number(run[1]) - firstId
    for (let i = first; i <= last; i++) {
      const row = out[start + i] as Record<string, unknown>
      for (let c = 0; c < asked.length; c++) {
        const value = run[3 + c] as string | null
        row[asked[c]!] = value === null ? null : parsers[c]!(value)
      }
    }
  }
  return true
}

/** Fill in `asked` from COPY text of those columns, a line per row from `out[start]` on; resolves to how many lines. */
function fillRows(data: readonly Buffer[], shape: RowShape, asked: readonly string[], out: unknown[], start: number): Promise<number> {
  const parsers = asked.map((n) => shape.parserOf.get(n)!)
  return parseRows(data, { names: asked, parsers, empty: {}, parserOf: shape.parserOf }, out, start)
}

interface Ids {
  /** The i-th smallest id, as decimal text. */
  at(i: number): string
  /** The `from`-th to the `to`-th smallest ids. */
  list(from: number, to: number): string[]
  /** Runs of consecutive ids among the `from`-th to the `to`-th smallest (ascending, decimal text). */
  ranges(from: number, to: number): Array<[string, string]>
}

/**
 * `count` ids from `sequence` in one statement. It answers with the lowest and highest: one range
 * when no other session took ids meanwhile (the common case); only otherwise with the list.
 */
async function takeIds(db: Database, sequence: string, count: number): Promise<Ids> {
  const { rows } = await db.query<{ lo: string; hi: string; list: string | null }>(
    `WITH s AS MATERIALIZED (SELECT nextval($1::regclass) AS id FROM generate_series(1, $2::int)),
          m AS (SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM s)
     SELECT m.lo::text AS lo, m.hi::text AS hi, l.list FROM m LEFT JOIN LATERAL (SELECT string_agg(id::text, ',' ORDER BY id) AS list FROM s WHERE m.hi - m.lo + 1 <> m.n) AS l ON true`,
    [sequence, count],
  )
  const { lo, hi, list } = rows[0]!
  if (list === null && Number.isSafeInteger(Number(hi))) {
    const first = Number(lo)
    return {
      at: (i) => String(first + i),
      list: (from, to) => Array.from({ length: to - from }, (_, i) => String(first + from + i)),
      ranges: (from, to) => [[String(first + from), String(first + to - 1)]],
    }
  }
  const ids = list === null ? [] : list.split(',')
  if (list === null) for (let id = BigInt(lo); id <= BigInt(hi); id++) ids.push(String(id))
  return {
    at: (i) => ids[i]!,
    list: (from, to) => ids.slice(from, to),
    ranges(from, to) {
      const runs: Array<[string, string]> = []
      for (let i = from; i < to; i++) {
        const run = runs[runs.length - 1]
        if (run && BigInt(ids[i]!) === BigInt(run[1]) + 1n) run[1] = ids[i]!
        else runs.push([ids[i]!, ids[i]!])
      }
      return runs
    },
  }
}

const DATE_TYPES = new Set([1082, 1114, 1184])

/**
 * The parsers node-postgres would use, except that a date or time parser remembers its last text:
 * a batch's defaults (now()) repeat one value, and parsing it 100,000 times was a third of reading
 * the rows back. Each row still gets a Date of its own.
 */
const readTypes = {
  getTypeParser(oid: number, format?: string): (text: string) => unknown {
    const parse = pg.types.getTypeParser(oid, (format ?? 'text') as 'text') as (text: string) => unknown
    if (!DATE_TYPES.has(oid)) return parse
    let lastText: string | undefined
    let lastTime = 0
    return (text) => {
      if (text === lastText) return new Date(lastTime)
      const value = parse(text)
      if (value instanceof Date) {
        lastText = text
        lastTime = value.getTime()
      }
      return value
    }
  },
}

async function readBack<Row>(db: Database, text: string, values: unknown[]): Promise<Row[]> {
  return db.withClient(async (client) => {
    try {
      return (await client.query<Row & pg.QueryResultRow>({ text, values, types: readTypes } as pg.QueryConfig)).rows
    } catch (error) {
      throw mapDatabaseError(error)
    }
  })
}
