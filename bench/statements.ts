// Statement level: pgcrew's Database against a raw pg.Pool and postgres.js, same statements, same connections.
// Like with like: pgcrew runs statements with parameters as named prepared statements (its default,
// prepareStatements), postgres.js with { prepare: true }, so the pg.Pool side names its statements too;
// statements without parameters (SELECT 1, BEGIN, COMMIT) go unnamed on pgcrew and pg.Pool alike.
import pg from 'pg'
import postgres from 'postgres'
import { Database } from '../src/database/database.ts'
import { idStream, READ_SQL, UPDATE_SQL } from './workload.ts'

export type StatementKind = 'point read' | 'SELECT 1' | 'write transaction'
export type Client = 'pgcrew' | 'pg.Pool' | 'postgres.js'

export interface StatementSides {
  pgcrew: Database
  pool: pg.Pool
  sql: postgres.Sql
}

export async function openSides(url: string, connections: number): Promise<StatementSides> {
  const pgcrew = new Database({ connectionString: url, max: connections })
  await pgcrew.connect()
  const pool = new pg.Pool({ connectionString: url, max: connections })
  pool.on('error', () => {})
  const sql = postgres(url, { max: connections, onnotice: () => {} })
  // Open every connection before timing.
  await Promise.all(Array.from({ length: connections }, () => Promise.all([pgcrew.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)'), sql`SELECT pg_sleep(0.05)`])))
  return { pgcrew, pool, sql }
}

export async function closeSides(s: StatementSides): Promise<void> {
  await Promise.allSettled([s.pgcrew.close(), s.pool.end(), s.sql.end({ timeout: 5 })])
}

/** One statement of `kind` through `client`. */
function step(s: StatementSides, client: Client, kind: StatementKind, id: number): Promise<unknown> {
  if (kind === 'SELECT 1') {
    if (client === 'pgcrew') return s.pgcrew.query('SELECT 1')
    if (client === 'pg.Pool') return s.pool.query('SELECT 1')
    return s.sql`SELECT 1`
  }
  if (kind === 'point read') {
    if (client === 'pgcrew') return s.pgcrew.query(READ_SQL, [id])
    if (client === 'pg.Pool') return s.pool.query({ name: 'bench_read', text: READ_SQL, values: [id] })
    return s.sql.unsafe(READ_SQL, [id], { prepare: true })
  }
  if (client === 'pgcrew') return s.pgcrew.transaction((tx) => tx.query(UPDATE_SQL, [id]))
  if (client === 'pg.Pool') {
    return (async () => {
      const c = await s.pool.connect()
      try {
        await c.query('BEGIN')
        await c.query({ name: 'bench_update', text: UPDATE_SQL, values: [id] })
        await c.query('COMMIT')
        c.release()
      } catch (error) {
        c.release(true)
        throw error
      }
    })()
  }
  return s.sql.begin((sql) => sql.unsafe(UPDATE_SQL, [id], { prepare: true }))
}

/** Statements per second for `ms` with `loops` async loops (one per connection). */
export async function statementRate(s: StatementSides, client: Client, kind: StatementKind, loops: number, ms: number, seed: number): Promise<number> {
  const next = idStream(seed)
  const start = performance.now()
  const deadline = start + ms
  let ops = 0
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await step(s, client, kind, next())
      ops++
    }
  }
  await Promise.all(Array.from({ length: loops }, loop))
  return ops / ((performance.now() - start) / 1000)
}
