// The per-unit work both sides of the bench do, so the anchor and the crew run the very same code.
import { createHash } from 'node:crypto'

/** Chained sha256 rounds over the row's JSON; fixed (not calibrated) so every machine does the same work. */
export const HASH_ROUNDS = 20

/** The CPU-heavy variant: where per-row JavaScript work, not the server, is the bottleneck. */
export const HEAVY_ROUNDS = 200

/** Rows in the bench table. */
export const ROWS = 100_000

/**
 * The CPU work "a real task would do" with one row: JSON.stringify the row as pg returned it
 * (jsonb already parsed by pg), JSON.parse it back, then HASH_ROUNDS chained sha256 digests over
 * the ~1 KB JSON text. Returns a 64-char hex digest.
 */
export function cpuWork(row: unknown, rounds = HASH_ROUNDS): string {
  const text = JSON.stringify(row)
  const parsed = JSON.parse(text) as { id?: unknown }
  let digest = String(parsed.id)
  for (let i = 0; i < rounds; i++) digest = createHash('sha256').update(digest).update(text).digest('hex')
  return digest
}

/** A deterministic id stream (xorshift32), so both sides touch the same spread of rows. */
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

export const READ_SQL = 'SELECT id, name, payload, counter FROM bench_items WHERE id = $1'
export const WRITE_SQL = 'UPDATE bench_items SET counter = counter + 1, digest = $2 WHERE id = $1'

/** What the write unit hashes: a small synthetic record (no read first, so a write is one statement). */
export function writeRecord(id: number): Record<string, unknown> {
  return { id, kind: 'touch', tags: ['a', 'b', 'c'], note: 'x'.repeat(900), at: id * 7 }
}
