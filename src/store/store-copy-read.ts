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

/** Whole lines of COPY text, each parsed into a row object appended to `out`. */
function parseLines(text: string, names: readonly string[], parsers: readonly Parser[], empty: Record<string, unknown>, out: unknown[]): void {
  const width = names.length
  let at = 0
  while (at < text.length) {
    const row = { ...empty }
    for (let i = 0; i < width; i++) {
      const stop = text.indexOf(i < width - 1 ? '\t' : '\n', at)
      const field = text.slice(at, stop)
      at = stop + 1
      if (field === '\\N') continue
      row[names[i]!] = parsers[i]!(field.includes('\\') ? unescape(field) : field)
    }
    out.push(row)
  }
}

/**
 * `COPY (select) TO STDOUT` on `client`, each line parsed into a row object as node-postgres builds
 * them; `select` takes no parameters. The columns' names and types come from the server's
 * description of `select` (a run that returns no row), as a query's result would carry them.
 */
export async function copyRowsOut<Row>(client: pg.ClientBase, select: string, types: TypeParsers): Promise<Row[]> {
  const { fields } = await client.query(`SELECT * FROM (${select}) AS q LIMIT 0`)
  const names = fields.map((f) => f.name)
  const parsers = fields.map((f) => types.getTypeParser(f.dataTypeID, 'text'))
  const empty: Record<string, unknown> = {}
  for (const name of names) empty[name] = null
  const out: Row[] = []
  let rest: Buffer | undefined
  // A parser that throws must not end the loop early: the rest of the COPY would be left unread on
  // the connection. The data is drained, then the error thrown.
  let failed: { error: unknown } | undefined
  try {
    for await (const data of client.query(copyToStream(`COPY (${select}) TO STDOUT`)) as AsyncIterable<Buffer>) {
      if (failed) continue
      // A newline byte never occurs inside a UTF-8 character, so text up to the last one decodes whole.
      const chunk = rest ? Buffer.concat([rest, data]) : data
      const end = chunk.lastIndexOf(10)
      if (end < 0) {
        rest = chunk
        continue
      }
      rest = end + 1 < chunk.length ? chunk.subarray(end + 1) : undefined
      try {
        parseLines(chunk.toString('utf8', 0, end + 1), names, parsers, empty, out)
      } catch (error) {
        failed = { error }
      }
    }
  } catch (error) {
    throw mapDatabaseError(error)
  }
  if (failed) throw failed.error
  return out
}
