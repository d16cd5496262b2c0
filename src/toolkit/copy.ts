import { createRequire } from 'node:module'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { from as copyFromStream, to as copyToStream } from 'pg-copy-streams'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError, mapDatabaseError } from '../errors/database-error.ts'
import { qname } from './quote.ts'
import { holdConnection, type ConnectionTarget, type HeldConnection } from './toolkit-target.ts'
import { tableSql, type TableName } from './table-name.ts'

// node-postgres' own value serialisation (Date, arrays as '{…}', objects as JSON), so COPY rows
// encode exactly like query parameters do.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue(value: unknown): unknown }

export type { TableName } from './table-name.ts'

/** COPY's data format. Rows given as arrays are always sent as `text`. */
export type CopyFormat = 'text' | 'csv' | 'binary'

/** Options of {@link copyFrom}; every field is optional. */
export interface CopyFromOptions {
  /** Target columns, in the order of the values in each row. Default: all, in table order. */
  columns?: readonly string[]
  /** Format of raw data (a stream); rows given as arrays are encoded as `text`. Default `text`. */
  format?: CopyFormat
}

function formatSql(format: CopyFormat | undefined): string {
  if (format === undefined || format === 'text') return ''
  if (format === 'csv' || format === 'binary') return ` WITH (FORMAT ${format})`
  throw new PgcrewError('INVALID_OPTION', `format must be text, csv or binary, not "${String(format)}"`)
}

function encodeField(value: unknown): string {
  const v = prepareValue(value)
  if (v === null || v === undefined) return '\\N'
  const text = Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : String(v)
  return text.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'))
}

async function* encodeRows(rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): AsyncGenerator<string> {
  let batch = ''
  for await (const row of rows) {
    if (!Array.isArray(row)) throw new PgcrewError('INVALID_OPTION', 'copyFrom rows must be arrays of values in column order')
    batch += row.map(encodeField).join('\t') + '\n'
    if (batch.length >= 65536) {
      yield batch
      batch = ''
    }
  }
  if (batch !== '') yield batch
}

/** Give a COPY's connection back: reusable after a server error, destroyed after anything else. */
export async function giveBack(held: HeldConnection, error: unknown): Promise<void> {
  // A server error ends the COPY cleanly (the connection is idle again); anything else leaves it unknown.
  await held.release(error !== undefined && !(mapDatabaseError(error) instanceof DatabaseError))
}

/**
 * COPY … FROM STDIN: rows (arrays of values, sync or async iterable) or a readable stream of raw COPY
 * data in `format`. Resolves to the number of rows the server stored; all or nothing.
 *
 * @example await copyFrom(db, 'events', [[1, 'start'], [2, 'stop']], { columns: ['id', 'kind'] })
 */
export async function copyFrom(
  target: ConnectionTarget,
  table: TableName,
  source: Readable | Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
  options: CopyFromOptions = {},
): Promise<{ rows: number }> {
  const raw = source instanceof Readable
  if (!raw && options.format !== undefined && options.format !== 'text') {
    throw new PgcrewError('INVALID_OPTION', `rows given as arrays are sent as COPY text; pass a stream to send ${options.format} data`)
  }
  const columns = options.columns ? ` (${options.columns.map((c) => qname(c)).join(', ')})` : ''
  const text = `COPY ${tableSql(table, 'copyFrom table')}${columns} FROM STDIN${raw ? formatSql(options.format) : ''}`
  const held = await holdConnection(target)
  let failure: unknown
  try {
    const sink = held.client.query(copyFromStream(text))
    await pipeline(raw ? source : Readable.from(encodeRows(source)), sink)
    return { rows: sink.rowCount }
  } catch (error) {
    failure = error
    throw mapDatabaseError(error)
  } finally {
    await giveBack(held, failure)
  }
}

/**
 * COPY (query) TO STDOUT as a readable stream of raw bytes in `format`; the connection goes back
 * when the stream ends or is destroyed.
 *
 * @example await pipeline(copyTo(db, 'select * from events', { format: 'csv' }), createWriteStream('events.csv'))
 */
export function copyTo(target: ConnectionTarget, query: string, options: { format?: CopyFormat } = {}): Readable {
  const out = new PassThrough()
  const text = `COPY (${query}) TO STDOUT${formatSql(options.format)}`
  void (async () => {
    let held: HeldConnection | undefined
    let failure: unknown
    try {
      held = await holdConnection(target)
      await pipeline(held.client.query(copyToStream(text)), out)
    } catch (error) {
      failure = error ?? new Error('COPY TO failed')
      out.destroy(mapDatabaseError(error) as Error)
    } finally {
      if (held) await held.release(failure !== undefined)
    }
  })()
  return out
}
