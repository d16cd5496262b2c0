// The bundled demo: a catalogue of stars, one task per star that reads it, computes a magnitude and
// writes a result row — each result committed with its ledger mark, so a rerun does nothing twice.
// PGCREW_DEMO_TASKS sets how many stars (default 20000).
import { definePipeline } from '../src/pipeline/pipeline.ts'

const count = Number(process.env.PGCREW_DEMO_TASKS ?? 20_000)

export default definePipeline({
  name: 'demo-magnitudes',
  worker: new URL('../workers/demo-worker' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url),
  async setup(db) {
    await db.transaction(async (tx) => {
      await tx.query(`CREATE TABLE IF NOT EXISTS demo_stars (
        id int PRIMARY KEY, flux double precision NOT NULL, visits int NOT NULL DEFAULT 0)`)
      await tx.query(`CREATE TABLE IF NOT EXISTS demo_results (
        star_id int PRIMARY KEY REFERENCES demo_stars, magnitude double precision NOT NULL, worker int NOT NULL)`)
      // Seeded once; a rerun finds the stars already there.
      await tx.query(
        `INSERT INTO demo_stars (id, flux)
        SELECT g, 10 + (g * 7919 % 1000) FROM generate_series(1, $1::int) g ON CONFLICT DO NOTHING`,
        [count],
      )
    })
  },
  async tasks(db) {
    const { rows } = await db.query<{ key: number }>('SELECT id AS key FROM demo_stars ORDER BY id LIMIT $1', [count])
    return rows
  },
})
