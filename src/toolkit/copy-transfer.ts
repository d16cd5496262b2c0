import type { Writable } from 'node:stream'
import { from as copyFromStream, to as copyToStream } from 'pg-copy-streams'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { DatabaseError, mapDatabaseError } from '../errors/database-error.ts'
import { giveBack } from './copy.ts'
import { tableSql, type TableName } from './table-name.ts'
import { qname } from './quote.ts'
import { holdConnection, type ConnectionTarget, type HeldConnection } from './toolkit-target.ts'

/** Where a transfer writes: a target (Database, transaction, client) and a table (name or parts). */
export type CopyTransferTarget = readonly [target: ConnectionTarget, table: TableName] | { readonly target: ConnectionTarget; readonly table: TableName; readonly columns?: readonly string[] }

/** What happened at one target. A failed target stored nothing (COPY is all or nothing). */
export interface CopyTransferResult {
  /** The table as written in SQL (`"audit"."events"`). */
  readonly table: string
  readonly ok: boolean
  /** Rows stored (0 when the target failed). */
  readonly rows: number
  /** Bytes of COPY data sent to this target. */
  readonly bytes: number
  /** The target's error (a typed DatabaseError such as UniqueViolation) when `ok` is false. */
  readonly error?: unknown
}

interface Sink {
  table: string
  held: HeldConnection
  stream: Writable & { rowCount: number }
  bytes: number
  error: unknown
  settled: Promise<void>
}

/**
 * Streams one source query into one or more tables with COPY, passing the bytes through without
 * decoding rows. A target that fails (constraint violation, missing column…) is reported in its
 * result and dropped; the others finish. A failing source aborts every target and throws.
 *
 * @example
 * const [a, b] = await copyTransfer(prod, 'select * from events where day = current_date', [[archive, 'events'], [mirror, ['stage', 'events']]])
 */
export async function copyTransfer(source: ConnectionTarget, sourceQuery: string, targets: readonly CopyTransferTarget[], options: { format?: 'text' | 'binary' } = {}): Promise<CopyTransferResult[]> {
  if (targets.length === 0) throw new PgcrewError('INVALID_OPTION', 'copyTransfer needs at least one target')
  const format = options.format ?? 'text'
  if (format !== 'text' && format !== 'binary') throw new PgcrewError('INVALID_OPTION', `format must be text or binary, not "${String(format)}"`)
  const withFormat = format === 'binary' ? ' WITH (FORMAT binary)' : ''

  // Every name is checked before any COPY starts: a malformed one must not cut the others short.
  const plans = targets.map((t) => {
    const { target, table, columns } = Array.isArray(t) ? { target: t[0], table: t[1], columns: undefined } : (t as Exclude<CopyTransferTarget, readonly unknown[]>)
    return { target, name: tableSql(table, 'copyTransfer target table'), cols: columns ? ` (${columns.map((c) => qname(c)).join(', ')})` : '' }
  })
  const sinks: Sink[] = []
  let sourceHeld: HeldConnection | undefined
  let sourceBroken = false
  try {
    for (const { target, name, cols } of plans) {
      const held = await holdConnection(target)
      const stream = held.client.query(copyFromStream(`COPY ${name}${cols} FROM STDIN${withFormat}`))
      const sink: Sink = { table: name, held, stream, bytes: 0, error: undefined, settled: Promise.resolve() }
      sink.settled = new Promise<void>((resolve) => {
        stream.once('finish', () => resolve())
        stream.once('error', (error) => {
          sink.error = mapDatabaseError(error)
          resolve()
        })
      })
      sinks.push(sink)
    }
    sourceHeld = await holdConnection(source)
    const from = sourceHeld.client.query(copyToStream(`COPY (${sourceQuery}) TO STDOUT${withFormat}`))
    const live = (): Sink[] => sinks.filter((s) => s.error === undefined)

    await new Promise<void>((resolve, reject) => {
      from.on('data', (chunk: Buffer) => {
        const waits: Promise<unknown>[] = []
        for (const sink of live()) {
          sink.bytes += chunk.length
          // Backpressure: the source waits for the slowest healthy target; a target that fails stops counting.
          if (!sink.stream.write(chunk)) waits.push(Promise.race([new Promise((r) => sink.stream.once('drain', r)), sink.settled]))
        }
        if (waits.length > 0) {
          from.pause()
          void Promise.all(waits).then(() => from.resume())
        }
      })
      from.once('end', () => resolve())
      from.once('error', (error) => reject(mapDatabaseError(error)))
    })
    for (const sink of live()) sink.stream.end()
    await Promise.all(sinks.map((s) => s.settled))
    return sinks.map((s) =>
      Object.freeze(s.error === undefined ? { table: s.table, ok: true, rows: s.stream.rowCount, bytes: s.bytes } : { table: s.table, ok: false, rows: 0, bytes: s.bytes, error: s.error }),
    )
  } catch (error) {
    // The source (or a connection) failed: no target may keep a partial copy.
    sourceBroken = !(error instanceof DatabaseError)
    for (const sink of sinks) if (sink.error === undefined) sink.stream.destroy(error as Error)
    await Promise.all(sinks.map((s) => s.settled))
    throw error
  } finally {
    await sourceHeld?.release(sourceBroken)
    for (const sink of sinks) await giveBack(sink.held, sink.error)
  }
}
