// Reading the run history: the runs of a pipeline (or all), newest first, and one run with its
// samples and events. A run without an end whose lock is free lost its process: it is shown, and
// recorded, as crashed. That is a fact PostgreSQL keeps (a session lock dies with its connection),
// not a guess from how long ago the last sample came. A live run whose liveness session was lost (a
// killed backend, a server restart) takes its lock again a moment later, so a lock found free is
// checked again for a short grace before the run is called crashed: without it a `status` in that
// moment wrote a live run's end as crashed.
import type { Database } from '../database/database.ts'
import { openStore } from '../store/store.ts'
import { qname } from '../toolkit/quote.ts'
import { HISTORY_DEFAULTS } from './run-recorder.ts'
import { parseRunSessionName, RUN_SESSION_PREFIX, type RunEnded, type RunRecord, type RunSlowest, type RunStarted } from './run-record.ts'

type Row = { id: string; name: string; started_at: Date; stopped_at: Date | null; first: RunStarted | null; last: RunEnded | RunStarted | null; slowest: RunSlowest | null }

/** Whether the store's tables exist in `schema` (a database no run was ever recorded in has none). */
async function hasHistory(db: Database, schema: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS ok', [qname(schema, 'sessions'), qname(schema, 'session_messages')])
  return rows[0]!.ok
}

/** How long a run's lock must stay free before the run is called crashed (a live run retakes it well within). */
export const CRASH_GRACE_MILLIS = 5_000

/** Is the run's lock free right now? A shared try succeeds then (and ends with the transaction). */
async function lockFree(db: Database, lockKey: bigint): Promise<boolean> {
  return db.transaction(async (tx) => (await tx.query<{ free: boolean }>('SELECT pg_try_advisory_xact_lock_shared($1::bigint) AS free', [lockKey.toString()])).rows[0]!.free)
}

/** Is the run's process gone? Its lock is free, and stays free for `graceMillis` of checks. */
async function lockStaysFree(db: Database, lockKey: bigint, graceMillis: number): Promise<boolean> {
  const until = Date.now() + graceMillis
  for (;;) {
    if (!(await lockFree(db, lockKey))) return false
    if (Date.now() >= until) return true
    await new Promise((resolve) => setTimeout(resolve, Math.min(250, until - Date.now())))
  }
}

async function readRuns(db: Database, schema: string, where: { id?: number; pipeline?: string; limit?: number }): Promise<Row[]> {
  const m = qname(schema, 'session_messages')
  const { rows } = await db.query<Row>(
    `SELECT s.id, s.name, s.started_at, s.stopped_at,
            (SELECT message FROM ${m} WHERE session_id = s.id ORDER BY id LIMIT 1) AS first,
            (SELECT message FROM ${m} WHERE session_id = s.id ORDER BY id DESC LIMIT 1) AS last,
            (SELECT message FROM ${m} WHERE session_id = s.id AND message->>'kind' = 'slowest' ORDER BY id DESC LIMIT 1) AS slowest
       FROM ${qname(schema, 'sessions')} s
      WHERE s.name LIKE $1 || '%' AND ($2::bigint IS NULL OR s.id = $2)
        AND ($3::text IS NULL OR regexp_replace(s.name, '^pgcrew\\.run [0-9]+ ', '') = $3)
      ORDER BY s.id DESC LIMIT $4`,
    [RUN_SESSION_PREFIX, where.id ?? null, where.pipeline ?? null, where.limit ?? null],
  )
  return rows
}

function toRecord(r: Row, crashed: boolean): RunRecord {
  const started = r.first?.kind === 'started' ? r.first : null
  const ended = r.last?.kind === 'ended' ? r.last : null
  const summary = ended?.summary ?? null
  const endedAt = r.stopped_at
  return {
    id: Number(r.id),
    pipeline: started?.pipeline ?? parseRunSessionName(r.name)?.pipeline ?? '?',
    status: ended?.status ?? (crashed ? 'crashed' : 'running'),
    host: started?.host ?? null,
    pid: started?.pid ?? null,
    role: started?.role ?? null,
    database: started?.database ?? null,
    threads: summary?.threads ?? started?.threads ?? null,
    threadsUpTo: summary?.autoThreads ? (started?.threads ?? null) : null,
    connections: started?.connections ?? null,
    startedAt: r.started_at,
    endedAt,
    durationMillis: (endedAt ?? new Date()).getTime() - r.started_at.getTime(),
    done: summary?.done ?? null,
    failed: summary?.failed ?? null,
    tasksPerSecond: summary?.tasksPerSecond ?? null,
    slowest: r.slowest?.tasks ?? [],
    reason: ended?.reason ?? (crashed ? 'its process ended without recording an end (killed, or the machine went down)' : null),
    started,
    ended,
  }
}

/** Options of {@link listRuns}; every field is optional. */
export interface ListRunsOptions {
  pipeline?: string
  /** Newest first, at most this many. Default 20. */
  limit?: number
  schema?: string
  /** A run found crashed gets its end written (so later readers need not check). Default true. */
  recordCrashes?: boolean
  /** How long a free lock is checked again before its run is called crashed. Default {@link CRASH_GRACE_MILLIS}. */
  crashGraceMillis?: number
}

/** The recorded runs, newest first; running ones are checked for a live process. */
export async function listRuns(db: Database, options: ListRunsOptions & { id?: number } = {}): Promise<RunRecord[]> {
  const schema = options.schema ?? HISTORY_DEFAULTS.schema
  if (!(await hasHistory(db, schema))) return []
  const rows = await readRuns(db, schema, { id: options.id, pipeline: options.pipeline, limit: options.id === undefined ? (options.limit ?? 20) : undefined })
  const grace = options.crashGraceMillis ?? CRASH_GRACE_MILLIS
  // The runs without an end whose lock stays free, checked side by side (each may take the grace).
  const gone = await Promise.all(
    rows.map(async (row) => {
      const key = parseRunSessionName(row.name)?.lockKey
      return row.last?.kind !== 'ended' && key !== undefined && (await lockStaysFree(db, key, grace))
    }),
  )
  const records: RunRecord[] = []
  for (const [i, row] of rows.entries()) {
    let crashed = false
    if (gone[i]) {
      // The run may have written its end and released its lock between the read and the check.
      const again = (await readRuns(db, schema, { id: Number(row.id) }))[0]
      if (again?.last?.kind === 'ended') {
        records.push(toRecord(again, false))
        continue
      }
      crashed = true
      if (options.recordCrashes ?? true) await recordCrash(db, schema, Number(row.id)).catch(() => {})
    }
    records.push(toRecord(row, crashed))
  }
  return records
}

/** Write the end of a crashed run (a reader without write access leaves it to the next one). */
async function recordCrash(db: Database, schema: string, id: number): Promise<void> {
  const store = await openStore(db, { schema, create: false })
  const ended: RunEnded = { kind: 'ended', status: 'crashed', summary: null, reason: 'its process ended without recording an end (killed, or the machine went down)' }
  await store.session(id).queue(ended)
  await store.stopSession(id)
}

/** One run by id, or undefined. */
export async function getRun(db: Database, id: number, options: { schema?: string } = {}): Promise<RunRecord | undefined> {
  return (await listRuns(db, { ...options, id }))[0]
}

/** A run as `--json` prints it: its facts and summary, without the raw messages (the lock key is no figure). */
export function runForJson(run: RunRecord): Omit<RunRecord, 'started' | 'ended'> & { ledger: string | null; summary: RunEnded['summary'] } {
  const { started, ended, ...facts } = run
  return { ...facts, ledger: started?.ledger ?? null, summary: ended?.summary ?? null }
}

/** The threads line of `pgcrew runs N` and the report page: `1 (auto, up to 2), 11 connections at most`. */
export function threadsText(run: Pick<RunRecord, 'threads' | 'threadsUpTo' | 'connections'>): string | null {
  if (run.threads === null) return null
  return `${run.threads}${run.threadsUpTo !== null ? ` (auto, up to ${run.threadsUpTo})` : ''}, ${run.connections} connections at most`
}
