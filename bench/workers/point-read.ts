// Crew worker for the point-read bench: each task reads its ids one by one and does cpuWork per row.
import { defineWorker } from '../../src/define-worker.ts'
import { cpuWork, READ_SQL } from '../workload.ts'

export default defineWorker(async ({ db }) => async (task: { ids: number[]; rounds?: number }) => {
  let checksum = 0
  for (const id of task.ids) {
    const { rows } = await db.query(READ_SQL, [id])
    checksum += cpuWork(rows[0], task.rounds).charCodeAt(0)
  }
  return { ops: task.ids.length, checksum }
})
