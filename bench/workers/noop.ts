// A task that does nothing but its ledger claim: for the memory row, where the main process is measured.
import { defineWorker } from '../../src/crew/define-worker.ts'

export default defineWorker(async () => async () => {})
