// Crew worker for the small-write bench: each task updates its ids one by one (autocommit), hashing first.
import { defineWorker } from '../../src/define-worker.ts'
import { cpuWork, WRITE_SQL, writeRecord } from '../workload.ts'

export default defineWorker(async ({ db }) => async (task: { ids: number[] }) => {
  let written = 0
  for (const id of task.ids) {
    const { rowCount } = await db.query(WRITE_SQL, [id, cpuWork(writeRecord(id))])
    written += rowCount ?? 0
  }
  return { ops: task.ids.length, written }
})
