// A crew without worker threads: its one worker runs in this thread (`inProcess: true`). On a small
// machine whose server shares the cores, the thread hop, a second V8 isolate and the main thread's
// share of the work cost more than a second core gives back on light tasks: measured here (2 cores,
// 4 connections, the bench's light pipeline) the in-process path ran 1.2–1.6× the hand-written loop
// at or below its client CPU per task, where a worker thread ran ~1.1×. The worker keeps every
// contract of a thread's: its Database rebuilt from the snapshot with a pool of its own, its init
// hook, the ledger claim in each task's transaction. What a thread gives and this cannot: a task
// timeout (only a thread can be stopped mid-JavaScript) and heap limits.
import type { EventLoopUtilization } from 'node:perf_hooks'
import { threadId } from 'node:worker_threads'
import type { BatchEnvelope, CrewWorkerData, TaskEnvelope } from './crew-protocol.ts'

/** The part of piscina a Crew uses. */
export interface CrewThreads {
  run(body: TaskEnvelope | BatchEnvelope): Promise<unknown>
  readonly threads: ReadonlyArray<{ threadId: number; terminate(): Promise<unknown>; performance?: { eventLoopUtilization(...readings: EventLoopUtilization[]): EventLoopUtilization } }>
  on(event: 'error' | 'workerDestroy', listener: (worker?: { id?: number }) => void): unknown
  destroy(): Promise<void>
}

/** The crew's one worker, in this thread. */
export async function inlineThreads(data: CrewWorkerData): Promise<CrewThreads> {
  const { crewWorker } = await import('./crew-runtime.ts')
  const run = crewWorker(data, { inline: true })
  // Nothing can stop a task's JavaScript here: stopping closes the worker's Database (its transactions
  // roll back, its next query fails) and its channel.
  return {
    run: (body) => run(body),
    threads: [{ threadId, terminate: () => run.shutdown() }],
    on: () => undefined,
    destroy: () => run.shutdown(),
  }
}
