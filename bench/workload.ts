// The work every side of the bench does, so the hand-written loop, pgcrew and pgbench run the very same statements.
import { createHash } from 'node:crypto'

/** Chained sha256 rounds of a light task (~40 µs) and of the CPU-heavy one (~2 ms of JavaScript). */
/** The bench server's settings: durable, as a real server runs (the test clusters turn fsync off). */
export const DURABLE_SETTINGS = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '256MB', max_connections: 100 }

export const LIGHT_ROUNDS = 20
export const HEAVY_ROUNDS = 1000

/** Rows in the bench table. */
export const ROWS = 100_000

/**
 * The CPU work "a real task would do" with one row: JSON.stringify the row as pg returned it
 * (jsonb already parsed by pg), JSON.parse it back, then `rounds` chained sha256 digests over
 * the ~0.5 KB JSON text. Returns a 64-char hex digest.
 */
export function cpuWork(row: unknown, rounds = LIGHT_ROUNDS): string {
  const text = JSON.stringify(row)
  const parsed = JSON.parse(text) as { id?: unknown }
  let digest = String(parsed.id)
  for (let i = 0; i < rounds; i++) digest = createHash('sha256').update(digest).update(text).digest('hex')
  return digest
}

/** A deterministic id stream (xorshift32), so every side touches the same spread of rows. */
export function idStream(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return (x % ROWS) + 1
  }
}

export interface PipelineBenchTask extends Record<string, unknown> {
  key: number
  id: number
  rounds: number
}

export const TABLES_SQL = [
  `CREATE TABLE bench_items (id int PRIMARY KEY, name text NOT NULL, payload jsonb NOT NULL, counter int NOT NULL DEFAULT 0)`,
  `INSERT INTO bench_items (id, name, payload)
   SELECT g, 'item-' || g,
          jsonb_build_object('sku', md5(g::text), 'price', (g % 997) / 10.0, 'tags', jsonb_build_array('t' || g % 7, 't' || g % 11, 't' || g % 13),
                             'dims', jsonb_build_object('w', g % 50, 'h', g % 70, 'd', g % 90), 'note', repeat(md5((g * 3)::text), 4))
   FROM generate_series(1, ${ROWS}) g`,
  `CREATE TABLE bench_results (id bigserial PRIMARY KEY, item_id int NOT NULL, digest text NOT NULL)`,
  `CREATE TABLE bench_copy (id int NOT NULL, name text NOT NULL, value double precision, at timestamptz)`,
]

export const READ_SQL = 'SELECT id, name, payload, counter FROM bench_items WHERE id = $1'
export const INSERT_SQL = 'INSERT INTO bench_results (item_id, digest) VALUES ($1, $2)'
export const UPDATE_SQL = 'UPDATE bench_items SET counter = counter + 1 WHERE id = $1'
/** pgcrew's own ledger claim (src/pipeline/pipeline-ledger.ts markDone), written out so the hand loop and pgbench send the same. */
export const CLAIM_SQL = `INSERT INTO pgcrew_ledger AS l (pipeline, key, status, attempts, worker) VALUES ($1, $2, 'done', $3, $4)
     ON CONFLICT (pipeline, key) DO UPDATE SET status = 'done', attempts = EXCLUDED.attempts, worker = EXCLUDED.worker, error = NULL, finished_at = now()
     WHERE l.status <> 'done'`
