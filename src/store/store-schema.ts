// The store's own tables, all in one schema, created under a transaction-level advisory lock so
// that any number of processes may open a store on an empty database at the same moment.
import { hashKey } from '../toolkit/advisory-lock.ts'
import { qname } from '../toolkit/quote.ts'
import type { Database } from '../database/database.ts'

/** The store's tables, in creation order (a table comes after the ones it references). */
export const STORE_TABLES = ['config', 'sessions', 'session_messages', 'readings', 'events'] as const

/** The event severities, least to most severe (the events table's CHECK lists the same). */
export const SEVERITIES = ['debug', 'info', 'warning', 'error', 'critical'] as const
export type Severity = (typeof SEVERITIES)[number]

/** Quoted names of the store's tables in `schema`. */
export interface StoreNames {
  readonly schema: string
  readonly config: string
  readonly sessions: string
  readonly messages: string
  readonly readings: string
  readonly events: string
}

export function storeNames(schema: string): StoreNames {
  return Object.freeze({
    schema,
    config: qname(schema, 'config'),
    sessions: qname(schema, 'sessions'),
    messages: qname(schema, 'session_messages'),
    readings: qname(schema, 'readings'),
    events: qname(schema, 'events'),
  })
}

// Identity columns, never reset (flush and delete use DELETE, not TRUNCATE … RESTART IDENTITY), so
// an id once handed out is never handed out again. clock_timestamp(), not now(): rows added in one
// transaction still get their own times, and "latest" means latest.
function ddl(n: StoreNames): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${qname(n.schema)}`,
    `CREATE TABLE IF NOT EXISTS ${n.config} (
       key text PRIMARY KEY,
       value jsonb NOT NULL,
       updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
    `CREATE TABLE IF NOT EXISTS ${n.sessions} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       name text,
       started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
       stopped_at timestamptz)`,
    `CREATE TABLE IF NOT EXISTS ${n.messages} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       session_id bigint NOT NULL REFERENCES ${n.sessions} ON DELETE CASCADE,
       at timestamptz NOT NULL DEFAULT clock_timestamp(),
       message jsonb NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS ${qname('session_messages_session_id')} ON ${n.messages} (session_id, id)`,
    `CREATE TABLE IF NOT EXISTS ${n.readings} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       series text NOT NULL,
       value double precision NOT NULL,
       at timestamptz NOT NULL DEFAULT clock_timestamp(),
       session_id bigint REFERENCES ${n.sessions} ON DELETE CASCADE)`,
    `CREATE INDEX IF NOT EXISTS ${qname('readings_series_at')} ON ${n.readings} (series, at DESC, id DESC)`,
    `CREATE TABLE IF NOT EXISTS ${n.events} (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       at timestamptz NOT NULL DEFAULT clock_timestamp(),
       severity text NOT NULL CHECK (severity IN (${SEVERITIES.map((s) => `'${s}'`).join(', ')})),
       description text NOT NULL,
       data jsonb,
       session_id bigint REFERENCES ${n.sessions} ON DELETE CASCADE,
       handled_at timestamptz)`,
    `CREATE INDEX IF NOT EXISTS ${qname('events_at')} ON ${n.events} (at, id)`,
  ]
}

/** The advisory lock key of a store schema's DDL (one per schema, so two stores never wait on each other). */
export function storeLockKey(schema: string): bigint {
  return hashKey(`pgcrew.store:${schema}`)
}

/** True when every store table exists in the schema (one catalog query: the common case of opening). */
export async function storeTablesExist(db: Database, n: StoreNames): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relname = ANY($2) AND c.relkind = 'r'`,
    [n.schema, [...STORE_TABLES]],
  )
  return rows[0]!.n === STORE_TABLES.length
}

/**
 * Create the store's tables (those missing); `forceDrop` drops them first, with their data. The
 * schema itself is kept: the application's own tables may live in it.
 */
export async function createStoreTables(db: Database, n: StoreNames, options: { forceDrop?: boolean } = {}): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [storeLockKey(n.schema).toString()])
    if (options.forceDrop) {
      for (const table of [...STORE_TABLES].reverse()) await tx.query(`DROP TABLE IF EXISTS ${qname(n.schema, table)} CASCADE`)
    }
    for (const statement of ddl(n)) await tx.query(statement)
  })
}
