// The event log: what happened, how bad, and whether someone has dealt with it yet.
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { Database } from '../database/database.ts'
import { toJson } from './store-catalog.ts'
import { SEVERITIES, type Severity, type StoreNames } from './store-schema.ts'
import { checkId, checkSeverity, checkTime, type TimeInput } from './store-values.ts'

/** One logged event. */
export interface StoreEvent {
  id: number
  at: Date
  severity: Severity
  description: string
  data: unknown
  sessionId: number | null
  handledAt: Date | null
}

/** Options of `logEvent`; every field is optional. */
export interface LogEventOptions {
  /** debug, info, warning, error or critical. Default `info`. */
  severity?: Severity
  /** Any JSON value to keep with the event. */
  data?: unknown
  /** The session it belongs to (deleted with it). */
  session?: number
}

/** Options of `events`; every field is optional. */
export interface EventsOptions {
  /** Only events at or after this time. */
  since?: TimeInput
  /** Only events not handled yet. Default false. */
  unhandled?: boolean
  /** Only events of this severity or worse. */
  severity?: Severity
  /** Only events of this session. */
  session?: number
  /** At most this many (the newest ones). */
  limit?: number
}

export const EVENT_DEFAULTS = Object.freeze({ severity: 'info' as Severity })

const COLUMNS = `id, at, severity, description, data, session_id, handled_at`

type EventRow = { id: string; at: Date; severity: Severity; description: string; data: unknown; session_id: string | null; handled_at: Date | null }

function toEvent(r: EventRow): StoreEvent {
  return { id: Number(r.id), at: r.at, severity: r.severity, description: r.description, data: r.data, sessionId: r.session_id === null ? null : Number(r.session_id), handledAt: r.handled_at }
}

export async function logEvent(db: Database, n: StoreNames, description: string, options: LogEventOptions = {}): Promise<StoreEvent> {
  if (typeof description !== 'string' || description === '')
    throw new PgcrewError('INVALID_OPTION', `logEvent() takes a non-empty description, not ${JSON.stringify(description) ?? typeof description}`)
  const severity = checkSeverity(options.severity ?? EVENT_DEFAULTS.severity, 'logEvent() severity')
  const data = options.data === undefined ? null : toJson(options.data, 'logEvent() data')
  const session = options.session === undefined ? null : checkId(options.session, 'logEvent() session')
  const { rows } = await db.query<EventRow>(`INSERT INTO ${n.events} (severity, description, data, session_id) VALUES ($1, $2, $3::jsonb, $4) RETURNING ${COLUMNS}`, [
    severity,
    description,
    data,
    session,
  ])
  return toEvent(rows[0]!)
}

/** Events, oldest first (with `limit`: the newest `limit`, still oldest first). */
export async function listEvents(db: Database, n: StoreNames, options: EventsOptions = {}): Promise<StoreEvent[]> {
  const since = checkTime(options.since, 'events() since')
  const severity = options.severity === undefined ? null : checkSeverity(options.severity, 'events() severity')
  const session = options.session === undefined ? null : checkId(options.session, 'events() session')
  const limit = options.limit
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new PgcrewError('INVALID_OPTION', `events() limit takes a whole number ≥ 1, not ${JSON.stringify(limit)}`)
  const { rows } = await db.query<EventRow>(
    `SELECT * FROM (
       SELECT ${COLUMNS} FROM ${n.events}
        WHERE ($1::timestamptz IS NULL OR at >= $1) AND (NOT $2 OR handled_at IS NULL)
          AND ($3::text IS NULL OR array_position($4::text[], severity) >= array_position($4::text[], $3))
          AND ($5::bigint IS NULL OR session_id = $5)
        ORDER BY at DESC, id DESC LIMIT $6) e ORDER BY at, id`,
    [since ?? null, options.unhandled === true, severity, [...SEVERITIES], session, limit ?? null],
  )
  return rows.map(toEvent)
}

/** Mark an event handled (the first time counts); resolves to it. An unknown id is STORE_NOT_FOUND. */
export async function handleEvent(db: Database, n: StoreNames, id: number): Promise<StoreEvent> {
  checkId(id, 'handle()')
  const { rows } = await db.query<EventRow>(`UPDATE ${n.events} SET handled_at = coalesce(handled_at, clock_timestamp()) WHERE id = $1 RETURNING ${COLUMNS}`, [id])
  if (!rows[0]) throw new PgcrewError('STORE_NOT_FOUND', `handle(${id}): there is no event ${id} (cleared, or never logged); list them with events()`, { details: { event: id } })
  return toEvent(rows[0])
}

/** Remove events (only the handled ones with `{ handled: true }`); resolves to how many. */
export async function clearEvents(db: Database, n: StoreNames, options: { handled?: boolean } = {}): Promise<number> {
  return (await db.query(`DELETE FROM ${n.events}${options.handled ? ' WHERE handled_at IS NOT NULL' : ''}`)).rowCount ?? 0
}
