// Worker for examples/demo-pipeline.ts: one star per task, in the task's own transaction.
import { defineWorker } from '../src/crew/define-worker.ts'

export default defineWorker(async ({ db, workerId }) => {
  return async (task: { key: number }, { tx }) => {
    const q = tx ?? db
    const { rows } = await q.query<{ flux: number }>('SELECT flux FROM demo_stars WHERE id = $1', [task.key])
    const magnitude = -2.5 * Math.log10(rows[0]!.flux)
    await q.query('INSERT INTO demo_results (star_id, magnitude, worker) VALUES ($1, $2, $3)', [task.key, magnitude, workerId])
    await q.query('UPDATE demo_stars SET visits = visits + 1 WHERE id = $1', [task.key])
    return magnitude
  }
})
