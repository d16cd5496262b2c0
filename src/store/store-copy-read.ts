// Reading many rows back as node-postgres would give them, through COPY … TO STDOUT: the server
// writes the same text per value as in a result row (same output functions and settings), and each
// value goes through the parser node-postgres would pick for its column's type; only the transport
// differs. Decoding one string per chunk instead of one per field is what makes it pay for 100,000
// rows.
import type pg from 'pg'
import { to as copyToStream } from 'pg-copy-streams'
import { mapDatabaseError } from '../errors/database-error.ts'

type Parser = (text: string) => unknown

/** Where node-postgres' parsers come from (its `types` option). */
export interface TypeParsers {
  getTypeParser(oid: number, format?: string): Parser
}

const UNESCAPE = /\\(.)/g
const ESCAPED: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' }

/** COPY text's escapes undone (COPY TO writes only these: a backslash before a special character or a letter). */
function unescape(field: string): string {
  return field.replace(UNESCAPE, (_, c: string) => ESCAPED[c] ?? c)
}

/** Whole lines of COPY text, each parsed into a row object appended to `out` (or, from `into` on, into the rows there). */
function parseLines(text: string, names: readonly string[], parsers: readonly Parser[], empty: Record<string, unknown>, out: unknown[], into: number | undefined): number {
  const width = names.length
  let at = 0
  let rows = 0
  while (at < text.length) {
    const row = into === undefined ? { ...empty } : (out[into + rows] as Record<string, unknown> | undefined)
    if (row === undefined) throw new Error(`COPY answered more rows than there are to fill (${out.length})`)
    rows++
    for (let i = 0; i < width; i++) {
      const stop = text.indexOf(i < width - 1 ? '\t' : '\n', at)
      const field = text.slice(at, stop)
      at = stop + 1
      row[names[i]!] = field === '\\N' ? null : parsers[i]!(field.includes('\\') ? unescape(field) : field)
    }
    if (into === undefined) out.push(row)
  }
  return rows
}

/** The columns of a result: their names and node-postgres' parser for each. */
export interface RowShape {
  readonly names: readonly string[]
  readonly parsers: readonly Parser[]
  /** Every column null: each row starts as a copy of it (node-postgres builds its rows so). */
  readonly empty: Readonly<Record<string, unknown>>
  /** The parser of each column, by name. */
  readonly parserOf: ReadonlyMap<string, Parser>
}

/** The shape of `select`'s result, from the server's description of a run that returns no row. */
export async function describeRows(client: pg.ClientBase, select: string, types: TypeParsers): Promise<RowShape> {
  const { fields } = await client.query(`SELECT * FROM (${select}) AS q LIMIT 0`)
  const empty: Record<string, unknown> = {}
  for (const f of fields) empty[f.name] = null
  const names = fields.map((f) => f.name)
  const parsers = fields.map((f) => types.getTypeParser(f.dataTypeID, 'text'))
  return { names, parsers, empty, parserOf: new Map(names.map((n, i) => [n, parsers[i]!])) }
}

/**
 * `COPY (select) TO STDOUT` on `client`, its data kept as it came (`select` takes no parameters).
 * Parsing comes later (parseRows), so nothing can stop the COPY half-read.
 */
export async function copyOut(client: pg.ClientBase, select: string): Promise<Buffer[]> {
  const data: Buffer[] = []
  try {
    for await (const chunk of client.query(copyToStream(`COPY (${select}) TO STDOUT`)) as AsyncIterable<Buffer>) data.push(chunk)
  } catch (error) {
    throw mapDatabaseError(error)
  }
  return data
}

const PIECE = 65_536

/**
 * COPY text into row objects appended to `out` (or, from `into` on, into the rows there), ~64 KB at a time with a turn of the event loop in
 * between: a COPY into the server running meanwhile keeps being fed. Resolves to how many rows.
 */
export async function parseRows(data: readonly Buffer[], shape: RowShape, out: unknown[], into?: number): Promise<number> {
  let rows = 0
  const all = data.length === 1 ? data[0]! : Buffer.concat(data)
  for (let at = 0; at < all.length;) {
    // A newline byte never occurs inside a UTF-8 character: up to one, the text decodes whole.
    const end = at + PIECE >= all.length ? all.length - 1 : all.lastIndexOf(10, at + PIECE)
    const stop = end < at ? all.indexOf(10, at) : end
    rows += parseLines(all.toString('utf8', at, stop + 1), shape.names, shape.parsers, shape.empty, out, into === undefined ? undefined : into + rows)
    at = stop + 1
    if (at < all.length) await new Promise((resolve) => setImmediate(resolve))
  }
  return rows
}
