// The worker side of a crew: runs inside each piscina worker thread (loaded by workers/crew-worker).
import { BroadcastChannel, threadId } from 'node:worker_threads'
import { Database, TRANSACTION_FROM, TRANSACTION_LANE } from '../database/database.ts'
import type { LaneItem } from '../database/transaction-lane.ts'
import { isWorkerDefinition, type TaskHandler } from './define-worker.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { serializeError, type BatchEnvelope, type CrewMessage, type CrewWorkerData, type TaskEnvelope, type TaskOutcome } from './crew-protocol.ts'
import { discardRealmConnections, trackPgPools } from '../database/database-realm.ts'
import { claimStatement } from '../pipeline/pipeline-ledger.ts'
import { withConnectionRetry } from '../database/connection-retry.ts'
import { isTypeScript, registerTypeScript, tsxMissing } from './typescript-loader.ts'

/** Import the user's worker module, a TypeScript one with tsx registered first (a failed import would be cached). */
async function importWorkerModule(url: string): Promise<unknown> {
  if (isTypeScript(url) && !(await registerTypeScript())) {
    throw new PgcrewError('WORKER_INVALID', tsxMissing(url, 'point the crew at the built .js file'))
  }
  return import(url)
}

/**
 * A worker thread ended by a task timeout or a crash closes its sockets, but PostgreSQL would run
 * the query it left behind to the end (a pg_sleep(3600) for an hour). PostgreSQL 14+ can poll the
 * client while a query runs; older servers do not know the setting, and that is fine.
 */
async function stopQueriesOfDeadClients(client: import('pg').ClientBase): Promise<void> {
  await client.query("SELECT set_config('client_connection_check_interval', '1000', false)").catch(() => {})
}

/**
 * A result piscina cannot copy to the main thread (a pg result, a class with methods) would throw
 * after the task returned and kill the thread; refuse it here, as this task's own error.
 */
function sendable(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value !== 'function' && typeof value !== 'symbol') return value
  }
  try {
    structuredClone(value)
    return value
  } catch (error) {
    throw new PgcrewError(
      'RESULT_NOT_CLONEABLE',
      `the task's result cannot be sent to the main thread (${(error as Error).name}: it holds a function or another value that cannot be copied); return plain data such as result.rows, not a pg result or an object with methods`,
    )
  }
}

/**
 * Connect a worker's Database, waiting and retrying for the retry window while the server has no
 * free connection slot (another program took it between the budget check and this worker's start),
 * is starting up, or cannot be reached. Anything else (a wrong password, a missing database) fails
 * the init at once.
 */
async function connectPatiently(db: Database, signal: AbortSignal, windowMillis: number | undefined): Promise<void> {
  await withConnectionRetry(() => db.connect(), { windowMillis, signal })
}

interface Ready {
  db: Database
  handler: TaskHandler
}

/** Build the piscina task function for this worker; the init hook runs on its first task. */
export function crewWorker(data: CrewWorkerData, how: { inline?: boolean } = {}): ((envelope: TaskEnvelope | BatchEnvelope) => Promise<TaskOutcome | TaskOutcome[]>) & { shutdown(): Promise<void> } {
  // In a thread: before the user's module is imported, so a pool it creates at import time is known
  // and discarded. In process (crew-inline.ts) this realm's pools are the caller's own: kept.
  if (!how.inline) trackPgPools()
  // The crew's number for this worker, in the order its threads take their first task: 1…threads
  // (a thread that replaces a dead one takes the next). The ledger's `worker` column and the summary
  // show it.
  const workerId = Atomics.add(data.workerNumbers, 0, 1) + 1
  const abort = new AbortController()
  const channel = new BroadcastChannel(data.channel)
  channel.unref()
  let ready: Promise<Ready> | undefined

  const init = async (): Promise<Ready> => {
    const mod = (await importWorkerModule(data.workerModule)) as { default?: unknown }
    const definition = mod.default
    if (!isWorkerDefinition(definition)) {
      throw new PgcrewError('WORKER_INVALID', `${data.workerModule} must export default defineWorker(async ({ db }) => async (task) => result)`)
    }
    // Whatever this realm holds now was inherited or made at import time: it is not ours to share.
    if (!how.inline) await discardRealmConnections()
    const db = Database.fromSnapshot(data.snapshot, { max: data.perWorkerConnections, applicationName: `${data.applicationName ?? 'pgcrew'} worker ${workerId}` })
    try {
      db.onConnect(stopQueriesOfDeadClients)
      await connectPatiently(db, abort.signal, data.retryWindowMillis)
      const handler = await definition.init({ db, workerId, signal: abort.signal })
      if (typeof handler !== 'function') throw new PgcrewError('WORKER_INVALID', `the init hook of ${data.workerModule} must return a task function`)
      channel.postMessage({ type: 'ready', threadId } satisfies CrewMessage)
      return { db, handler }
    } catch (error) {
      // A thread's sockets die with it; in process (and in a thread that lives on) nothing else would close them.
      await db.close().catch(() => {})
      throw error
    }
  }

  let closing: Promise<void> | undefined
  /** Stop: abort the init hook's signal and close this worker's Database (its transactions roll back). */
  const shutdown = (): Promise<void> =>
    (closing ??= (async () => {
      abort.abort()
      const r = await ready?.catch(() => undefined)
      await r?.db.close().catch(() => {})
    })())
  channel.onmessage = (event: unknown) => {
    const msg = (event as { data: CrewMessage }).data
    if (msg.type !== 'close') return
    void shutdown().then(() => channel.postMessage({ type: 'closed', threadId } satisfies CrewMessage))
  }

  const runEnvelope = async (envelope: TaskEnvelope): Promise<TaskOutcome> => {
    if (envelope.timeoutId !== undefined) channel.postMessage({ type: 'started', threadId, timeoutId: envelope.timeoutId } satisfies CrewMessage)
    let r: Ready
    try {
      r = await (ready ??= init())
    } catch (error) {
      const serialized = serializeError(error)
      channel.postMessage({ type: 'init-failed', workerId, error: serialized } satisfies CrewMessage)
      // The crew words it ("worker init failed: …") and reports it once.
      return { ok: false, error: { ...serialized, code: 'WORKER_INIT_FAILED', transient: false }, workerId, threadId }
    }
    try {
      if (envelope.mode === 'plain') {
        const value = await r.handler(envelope.task, { db: r.db, workerId, attempt: envelope.attempt })
        return { ok: true, value: sendable(value), workerId, threadId }
      }
      // Claim the key first (markDone's statement, sent with the BEGIN in one round trip): a concurrent
      // or repeated attempt waits on this row, then sees it done.
      const claim = claimStatement(envelope.ledger, envelope.pipeline, envelope.key, envelope.attempt, workerId, data.host)
      // Timed here, not where the outcome arrives (a batch's outcomes arrive together), and from the claim
      // on: a batch's tasks wait for the worker's connections, and that wait is not theirs.
      let begun = 0
      const outcome = await r.db[TRANSACTION_FROM](claim, async (tx, claimed) => {
        begun = performance.now()
        if (claimed.rowCount !== 1) return { skipped: true, value: undefined }
        return { skipped: false, value: await r.handler(envelope.task, { db: r.db, workerId, tx, attempt: envelope.attempt }) }
      })
      // A pipeline keeps no results: the task's writes are its result (and a pg result could not cross).
      return { ok: true, value: undefined, skipped: outcome.skipped, millis: performance.now() - begun, workerId, threadId }
    } catch (error) {
      return { ok: false, error: serializeError(error), workerId, threadId }
    }
  }

  type PipelineEnvelope = Extract<TaskEnvelope, { mode: 'pipeline' }>
  /**
   * A batch of pipeline tasks: one lane per connection (perWorkerConnections), each taking the
   * batch's next task as the one before commits, and sending that COMMIT with the next task's BEGIN
   * and ledger claim in one round trip (transaction-lane.ts).
   */
  const runPipelineBatch = async (envelopes: PipelineEnvelope[]): Promise<TaskOutcome[]> => {
    let r: Ready
    try {
      r = await (ready ??= init())
    } catch {
      // Each envelope reports the init failure as runEnvelope words it.
      return Promise.all(envelopes.map(runEnvelope))
    }
    const outcomes: TaskOutcome[] = new Array(envelopes.length)
    let taken = 0
    const next = (): LaneItem<{ skipped: boolean }> | undefined => {
      if (taken >= envelopes.length) return undefined
      const index = taken++
      const envelope = envelopes[index]!
      if (envelope.timeoutId !== undefined) channel.postMessage({ type: 'started', threadId, timeoutId: envelope.timeoutId } satisfies CrewMessage)
      let begun = 0
      return {
        first: claimStatement(envelope.ledger, envelope.pipeline, envelope.key, envelope.attempt, workerId, data.host),
        run: async (tx, claimed) => {
          begun = performance.now()
          if (claimed.rowCount !== 1) return { skipped: true }
          await r.handler(envelope.task, { db: r.db, workerId, tx, attempt: envelope.attempt })
          return { skipped: false }
        },
        settle: (outcome) => {
          outcomes[index] = outcome.ok
            ? { ok: true, value: undefined, skipped: outcome.value.skipped, millis: performance.now() - begun, workerId, threadId }
            : { ok: false, error: serializeError(outcome.error), workerId, threadId }
        },
      }
    }
    const lanes = Math.min(data.perWorkerConnections, envelopes.length)
    await Promise.all(Array.from({ length: lanes }, () => r.db[TRANSACTION_LANE](next)))
    return outcomes
  }

  // A batch runs its tasks side by side; the worker's pool (perWorkerConnections) limits how many at once.
  const run = (body: TaskEnvelope | BatchEnvelope): Promise<TaskOutcome | TaskOutcome[]> => {
    if (body.mode !== 'batch') return runEnvelope(body)
    if (data.lanes !== false && body.tasks.every((t): t is PipelineEnvelope => t.mode === 'pipeline')) return runPipelineBatch(body.tasks)
    return Promise.all(body.tasks.map(runEnvelope))
  }
  // In process the crew calls shutdown itself (destroy, a close that timed out) and the channel must go
  // with it; a thread's channel dies with the thread.
  return Object.assign(run, {
    shutdown: async () => {
      await shutdown()
      channel.close()
    },
  })
}
