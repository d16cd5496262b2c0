// The file piscina loads for every crew: it reconnects from the master's snapshot, then runs the
// user's worker module (named in workerData) one task at a time.
//
// pg and pgcrew's runtime are loaded on the thread's first task, not when the thread starts: piscina
// starts every thread of a crew's budget, and with threads: 'auto' a run of light tasks may never take
// some of them into use. Such a thread then costs its start alone; loading them cost ~220 ms of CPU
// and ~13 MB in each (bench/startup.ts).
import { workerData } from 'node:worker_threads'
import type { BatchEnvelope, CrewWorkerData, TaskEnvelope, TaskOutcome } from '../src/crew/crew-protocol.ts'
import { isTypeScript, registerTypeScript, tsxMissing } from '../src/crew/typescript-loader.ts'

type Run = (envelope: TaskEnvelope | BatchEnvelope) => Promise<TaskOutcome | TaskOutcome[]>

async function load(): Promise<Run> {
  // Run from source under tsx (development, the tests), the modules below are TypeScript too; on
  // Node 20 a thread's import() has tsx's hooks only once the thread registers them itself.
  if (isTypeScript(import.meta.url) && !(await registerTypeScript())) {
    throw new Error(tsxMissing(import.meta.url, 'run the built .js files'))
  }
  // First: pg, loaded without its import-time probe's cost (see pg-preload.ts).
  await import('../src/crew/pg-preload.ts')
  const { crewWorker } = await import('../src/crew/crew-runtime.ts')
  return crewWorker(workerData as CrewWorkerData)
}

/**
 * This thread could not load pg or pgcrew (a broken install): every task fails as a failed worker
 * init does, permanent, so a run stops at once instead of retrying each task as if the thread had died.
 * No threadId: the thread never joined the crew's channel, so close() must not wait for its answer.
 * Worded here rather than by crew-protocol's serializeError: that module's imports may be what failed.
 */
function loadFailed(envelope: TaskEnvelope | BatchEnvelope, error: unknown): TaskOutcome | TaskOutcome[] {
  const e = error as { message?: unknown; code?: unknown }
  const message = `this worker thread could not load pgcrew: ${typeof e?.message === 'string' ? e.message : String(error)}${typeof e?.code === 'string' ? ` (${e.code})` : ''}`
  const outcome: TaskOutcome = { ok: false, error: { name: 'PgcrewError', code: 'WORKER_INIT_FAILED', message, transient: false }, workerId: -1 }
  return envelope.mode === 'batch' ? envelope.tasks.map(() => outcome) : outcome
}

let run: Run | undefined
let loading: Promise<Run> | undefined

export default function crewTask(envelope: TaskEnvelope | BatchEnvelope): Promise<TaskOutcome | TaskOutcome[]> {
  if (run) return run(envelope)
  return (loading ??= load().then((loaded) => (run = loaded))).then(
    (loaded) => loaded(envelope),
    (error: unknown) => loadFailed(envelope, error),
  )
}
