// addMany's COPY path. The rows are encoded as COPY text into one string per ~64 KB chunk (no string
// or array per row or field, which is what made the generic copyFrom encoder the cost), streamed
// into the table on the transaction's connection; rows to return are read back in input order by
// primary keys known before the COPY: taken from the table's sequence up front (one round trip
// answering with ranges, not one id per row), or given by the caller.
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import pg from 'pg'
import { mapDatabaseError } from '../errors/database-error.ts'
import { qname } from '../toolkit/quote.ts'
import { copyFrom } from '../toolkit/copy.ts'
import type { Database } from '../database/database.ts'
import { copyOut, describeRows, parseRows } from './store-copy-read.ts'
import { encodeValue, type StoreColumn, type TableInfo } from './store-catalog.ts'

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

/** One field of COPY text: `\N` for NULL, the parameter text with COPY's four specials escaped. */
function fieldText(info: TableInfo, column: StoreColumn, value: unknown, what: string): string {
  const v = encodeValue(info, column, value, what)
  if (v === null || v === undefined) return '\\N'
  let text: string
  if (typeof v === 'string') text = v
  else if (typeof v === 'number') return String(v)
  else {
    const p = prepareValue(v)
    if (p === null || p === undefined) return '\\N'
    text = Buffer.isBuffer(p) ? `\\x${p.toString('hex')}` : String(p)
  }
  return NEEDS_ESCAPE.test(text) ? text.replace(ESCAPES, escapeChar) : text
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
): Generator<Buffer> {
  const last = columns.length - 1
  let chunk = ''
  for (let i = from; i < to; i++) {
    const row = rows[i]!
    for (let c = 0; c <= last; c++) chunk += fieldText(info, columns[c]!, row[columns[c]!.name], what) + (c < last || key ? '\t' : '')
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

/**
 * COPY `rows` and read them back as stored, in input order. The key is the one-column primary key
 * `pk`: given in every row, or (when `columns` leaves it out) taken from its sequence before the COPY.
 */
export async function copyRowsReturning<Row>(db: Database, info: TableInfo, columns: readonly StoreColumn[], pk: StoreColumn, rows: readonly Record<string, unknown>[], what: string): Promise<Row[]> {
  const names = columns.map((c) => c.name)
  if (names.includes(pk.name)) {
    await copyFrom(db, info.parts, Readable.from(copyText(info, columns, rows, what)), { columns: names })
    // The caller's keys joined with their ordinal: input order whatever the key's type and spelling.
    const keys = rows.map((r) => encodeValue(info, pk, r[pk.name], what))
    return readBack<Row>(db, `SELECT t.* FROM unnest($1::${pk.type}[]) WITH ORDINALITY AS k(key, ord) JOIN ${info.sql} AS t ON t.${qname(pk.name)} = k.key ORDER BY k.ord`, [keys])
  }
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
