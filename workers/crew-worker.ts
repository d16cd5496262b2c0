// The file piscina loads for every crew: it reconnects from the master's snapshot, then runs the
// user's worker module (named in workerData) one task at a time.
// First: pg, loaded without its import-time probe's cost (see pg-preload.ts).
import '../src/crew/pg-preload.ts'
import { workerData } from 'node:worker_threads'
import { crewWorker } from '../src/crew/crew-runtime.ts'
import type { CrewWorkerData } from '../src/crew/crew-protocol.ts'

export default crewWorker(workerData as CrewWorkerData)
