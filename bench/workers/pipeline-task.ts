// The pipeline task of the bench, as a pgcrew worker: read one row, compute, insert a result, bump a counter.
import { defineWorker } from '../../src/crew/define-worker.ts'
import { cpuWork, INSERT_SQL, READ_SQL, UPDATE_SQL, type PipelineBenchTask } from '../workload.ts'

export default defineWorker(async () => async (task: PipelineBenchTask, { tx }) => {
  const { rows } = await tx!.query(READ_SQL, [task.id])
  await tx!.query(INSERT_SQL, [task.id, cpuWork(rows[0], task.rounds)])
  await tx!.query(UPDATE_SQL, [task.id])
})
