// Logging sessions: a numbered run of JSON messages. Ids come from identity columns that are never
// reset, so an id is never handed out twice, even after its session was deleted or flushed.
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { Database } from '../database/database.ts'
import { toJson } from './store-catalog.ts'
import type { StoreNames } from './store-schema.ts'
import { checkId } from './store-values.ts'

/** A session, as `sessions()` lists them. */
export interface SessionInfo {
  id: number
  name: string | null
  startedAt: Date
  stoppedAt: Date | null
  /** Messages queued into it. */
  count: number
}

/** One queued message. */
export interface SessionMessage {
  id: number
  sessionId: number
  at: Date
  message: unknown
}

type SessionRow = { id: string; name: string | null; started_at: Date; stopped_at: Date | null; count: string }
type MessageRow = { id: string; session_id: string; at: Date; message: unknown }

const toSession = (r: SessionRow): SessionInfo => ({ id: Number(r.id), name: r.name, startedAt: r.started_at, stoppedAt: r.stopped_at, count: Number(r.count) })
const toMessage = (r: MessageRow): SessionMessage => ({ id: Number(r.id), sessionId: Number(r.session_id), at: r.at, message: r.message })

const notFound = (id: number, what: string) =>
  new PgcrewError('STORE_SESSION_NOT_FOUND', `${what}: there is no session ${id} (deleted, flushed, or never started); list them with sessions()`, { details: { session: id } })

export async function startSession(db: Database, n: StoreNames, name?: string): Promise<number> {
  if (name !== undefined && typeof name !== 'string') throw new PgcrewError('INVALID_OPTION', `startSession() name takes a string, not ${JSON.stringify(name) ?? typeof name}`)
  const { rows } = await db.query<{ id: string }>(`INSERT INTO ${n.sessions} (name) VALUES ($1) RETURNING id`, [name ?? null])
  return Number(rows[0]!.id)
}

/** Stop a session (stopping it again keeps the first stop time); resolves to it. */
export async function stopSession(db: Database, n: StoreNames, id: number): Promise<SessionInfo> {
  checkId(id, 'stopSession()')
  const { rows } = await db.query<SessionRow>(
    `UPDATE ${n.sessions} s SET stopped_at = coalesce(stopped_at, clock_timestamp()) WHERE id = $1
     RETURNING id, name, started_at, stopped_at, (SELECT count(*) FROM ${n.messages} m WHERE m.session_id = s.id) AS count`,
    [id],
  )
  if (!rows[0]) throw notFound(id, 'stopSession()')
  return toSession(rows[0])
}

/** Add a message to an open session: one statement, which also checks that the session is open. */
export async function queueMessage(db: Database, n: StoreNames, id: number, message: unknown): Promise<SessionMessage> {
  checkId(id, 'queue() session')
  const json = toJson(message, `queue() into session ${id}`)
  const { rows } = await db.query<MessageRow>(
    `INSERT INTO ${n.messages} (session_id, message) SELECT id, $2::jsonb FROM ${n.sessions} WHERE id = $1 AND stopped_at IS NULL RETURNING id, session_id, at, message`,
    [id, json],
  )
  if (rows[0]) return toMessage(rows[0])
  const { rows: found } = await db.query<{ stopped_at: Date }>(`SELECT stopped_at FROM ${n.sessions} WHERE id = $1`, [id])
  if (!found[0]) throw notFound(id, 'queue()')
  throw new PgcrewError('STORE_SESSION_STOPPED', `queue(): session ${id} was stopped at ${found[0].stopped_at.toISOString()}; start a new one with startSession()`, { details: { session: id } })
}

/** The last `limit` messages of a session (all without it), in the order they were queued. */
export async function sessionMessages(db: Database, n: StoreNames, id: number, limit: number | undefined, what: string): Promise<SessionMessage[]> {
  checkId(id, what)
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new PgcrewError('INVALID_OPTION', `${what} takes a whole number of messages ≥ 0, not ${JSON.stringify(limit)}`)
  // One statement: the session row tells "no such session" apart from "no messages yet".
  const { rows } = await db.query<MessageRow & { known: number }>(
    `SELECT m.*, 1 AS known FROM ${n.sessions} s LEFT JOIN LATERAL (
       SELECT * FROM (SELECT id, session_id, at, message FROM ${n.messages} WHERE session_id = s.id ORDER BY id DESC LIMIT $2) l ORDER BY id
     ) m ON true WHERE s.id = $1`,
    [id, limit ?? null],
  )
  if (rows.length === 0) throw notFound(id, what)
  return rows.filter((r) => r.id !== null).map(toMessage)
}

export async function listSessions(db: Database, n: StoreNames): Promise<SessionInfo[]> {
  const { rows } = await db.query<SessionRow>(
    `SELECT s.id, s.name, s.started_at, s.stopped_at, count(m.id) AS count FROM ${n.sessions} s LEFT JOIN ${n.messages} m ON m.session_id = s.id GROUP BY s.id ORDER BY s.id`,
  )
  return rows.map(toSession)
}

/** Delete a session with its messages, readings and events; false when there was none. */
export async function deleteSession(db: Database, n: StoreNames, id: number): Promise<boolean> {
  checkId(id, 'deleteSession()')
  return ((await db.query(`DELETE FROM ${n.sessions} WHERE id = $1`, [id])).rowCount ?? 0) > 0
}

/** Delete every session (and what belongs to them); ids keep counting up. Resolves to how many. */
export async function flushSessions(db: Database, n: StoreNames, options: { confirm?: boolean }): Promise<number> {
  if (options?.confirm !== true) throw new PgcrewError('STORE_FLUSH_NOT_CONFIRMED', 'flush() deletes every session with its messages, readings and events: call flush({ confirm: true })')
  return (await db.query(`DELETE FROM ${n.sessions}`)).rowCount ?? 0
}
