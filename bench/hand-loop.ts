// The hand-written loop, in a module of its own that imports pg and the workload only (no pgcrew):
// the bench's two-process side starts it in child processes, and a cold child must load what a user's
// own script would, not pgcrew.
import type pg from 'pg'
import { CLAIM_SQL, cpuWork, idStream, INSERT_SQL, READ_SQL, UPDATE_SQL, type PipelineBenchTask } from './workload.ts'

export function* tasks(count: number, seed: number, rounds: number): Generator<PipelineBenchTask> {
  const next = idStream(seed)
  for (let key = 1; key <= count; key++) yield { key, id: next(), rounds }
}

/**
 * What a user writes without pgcrew: one pg.Pool of `loops` connections and as many async loops, each
 * task BEGIN, the ledger claim, read, compute, insert, update, COMMIT. Returns tasks per second.
 */
export async function handLoop(pool: pg.Pool, name: string, count: number, seed: number, rounds: number, loops = 4): Promise<number> {
  const source = tasks(count, seed, rounds)
  const start = performance.now()
  const loop = async (): Promise<void> => {
    for (let r = source.next(); !r.done; r = source.next()) {
      const task = r.value
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const claim = await client.query(CLAIM_SQL, [name, String(task.key), 1, 0])
        if (claim.rowCount === 1) {
          const { rows } = await client.query(READ_SQL, [task.id])
          await client.query(INSERT_SQL, [task.id, cpuWork(rows[0], task.rounds)])
          await client.query(UPDATE_SQL, [task.id])
        }
        await client.query('COMMIT')
        client.release()
      } catch (error) {
        client.release(true)
        throw error
      }
    }
  }
  await Promise.all(Array.from({ length: loops }, loop))
  return count / ((performance.now() - start) / 1000)
}
