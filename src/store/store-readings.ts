// Readings: numbers in named series (a sensor, a counter, a timing), and the latest N of each
// series in one statement (a LATERAL top-N per series over the (series, at) index).
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { Database } from '../database/database.ts'
import type { StoreNames } from './store-schema.ts'
import { checkId, checkTime, type TimeInput } from './store-values.ts'

/** One reading, as `latest()` returns it. */
export interface Reading {
  id: number
  series: string
  value: number
  at: Date
  sessionId: number | null
}

/** Options of `addReading`; every field is optional. */
export interface AddReadingOptions {
  /** When it was measured. Default: now (the server's clock). */
  at?: TimeInput
  /** The session it belongs to (deleted with it). Default: none. */
  session?: number
}

/** Options of `latest`; every field is optional. */
export interface LatestOptions {
  /** One series or several. Default: every series there is. */
  series?: string | readonly string[]
  /** Only readings at or after this time. */
  since?: TimeInput
  /** Readings per series. Default 50. */
  limit?: number
}

export const READINGS_DEFAULTS = Object.freeze({ limit: 50 })

const COLUMNS = `id, series, value, at, session_id`

function toReading(r: { id: string; series: string; value: number; at: Date; session_id: string | null }): Reading {
  return { id: Number(r.id), series: r.series, value: r.value, at: r.at, sessionId: r.session_id === null ? null : Number(r.session_id) }
}

export async function addReading(db: Database, n: StoreNames, series: string, value: number, options: AddReadingOptions = {}): Promise<Reading> {
  if (typeof series !== 'string' || series === '') throw new PgcrewError('INVALID_OPTION', `addReading() takes a non-empty series name, not ${JSON.stringify(series) ?? typeof series}`)
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new PgcrewError(
      'STORE_INVALID_VALUE',
      `addReading(${JSON.stringify(series)}): a reading is a finite number, not ${typeof value === 'number' ? value : (JSON.stringify(value) ?? typeof value)}`,
      {
        details: { series },
      },
    )
  }
  const at = checkTime(options.at, 'addReading() at')
  const session = options.session === undefined ? null : checkId(options.session, 'addReading() session')
  const { rows } = await db.query(`INSERT INTO ${n.readings} (series, value, at, session_id) VALUES ($1, $2, coalesce($3::timestamptz, clock_timestamp()), $4) RETURNING ${COLUMNS}`, [
    series,
    value,
    at ?? null,
    session,
  ])
  return toReading(rows[0])
}

/** The latest `limit` readings of each series, newest first within a series, series in name order: one statement. */
export async function latestReadings(db: Database, n: StoreNames, options: LatestOptions = {}): Promise<Reading[]> {
  const limit = options.limit ?? READINGS_DEFAULTS.limit
  if (!Number.isSafeInteger(limit) || limit < 1) throw new PgcrewError('INVALID_OPTION', `latest() limit takes a whole number ≥ 1, not ${JSON.stringify(limit)}`)
  const series = options.series === undefined ? undefined : typeof options.series === 'string' ? [options.series] : options.series
  if (series && (!Array.isArray(series) || !series.every((s) => typeof s === 'string'))) throw new PgcrewError('INVALID_OPTION', 'latest() series takes a series name or a list of them')
  const since = checkTime(options.since, 'latest() since')
  const names = series ? `unnest($1::text[]) AS s (series)` : `(SELECT DISTINCT series FROM ${n.readings} WHERE $1::text[] IS NULL) AS s`
  const { rows } = await db.query(
    `SELECT r.* FROM ${names} CROSS JOIN LATERAL (
       SELECT ${COLUMNS} FROM ${n.readings} x WHERE x.series = s.series AND ($2::timestamptz IS NULL OR x.at >= $2) ORDER BY x.at DESC, x.id DESC LIMIT $3
     ) r ORDER BY r.series, r.at DESC, r.id DESC`,
    [series ? [...series] : null, since ?? null, limit],
  )
  return rows.map(toReading)
}
