// How the pipeline sizes its messages to the workers (task-batcher.ts): by the tasks' measured time
// unless tasksPerMessage fixes it. The crew here is a stand-in that records each message and answers
// with outcomes of a chosen duration: what is tested is the sizing, not a worker.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Crew } from '../../src/crew/crew.ts'
import type { TaskEnvelope, TaskOutcome } from '../../src/crew/crew-protocol.ts'
import { MOST_PER_CONNECTION, TaskBatcher } from '../../src/pipeline/task-batcher.ts'

function recordingCrew(millis: () => number, skipped = () => false): { crew: Crew; messages: number[] } {
  const messages: number[] = []
  const outcome = (): TaskOutcome => ({ ok: true, value: undefined, skipped: skipped(), millis: millis(), workerId: 1 })
  const crew = {
    dispatch: async (_e: TaskEnvelope) => {
      messages.push(1)
      return outcome()
    },
    dispatchBatch: async (es: TaskEnvelope[]) => {
      messages.push(es.length)
      return es.map(outcome)
    },
  } as unknown as Crew
  return { crew, messages }
}

const envelope = (key: number): TaskEnvelope => ({ mode: 'pipeline', task: { key }, attempt: 1, pipeline: 'p', key: String(key), ledger: 'pgcrew_ledger' })

/** Dispatch `n` tasks in one turn, as the pipeline hands out a window of them; wait for all outcomes. */
const round = (b: TaskBatcher, n: number, from = 0): Promise<TaskOutcome[]> => Promise.all(Array.from({ length: n }, (_, i) => b.dispatch(envelope(from + i))))

describe('message size', () => {
  test('one task per connection until the first outcomes, then about 50 ms of work per connection, 16 at most', async () => {
    let millis = 2
    const { crew, messages } = recordingCrew(() => millis)
    const b = new TaskBatcher(crew, { perWorker: 4, threads: 1 })
    assert.equal(b.size, 4)
    await round(b, 12)
    assert.deepEqual(messages, [4, 4, 4])
    // 2 ms tasks: 25 fit in 50 ms, capped at 16 per connection.
    assert.equal(b.size, 4 * MOST_PER_CONNECTION)
    messages.length = 0
    await round(b, 100, 100)
    assert.deepEqual(messages, [64, 36])
    // Tasks that get slower: 10 ms, 5 per connection; a second, one per connection again.
    millis = 10
    for (let i = 0; i < 100 && (b.size as number) !== 20; i++) await round(b, 4, 1000 + i * 10)
    assert.equal(b.size, 20, 'tasks of 10 ms: 5 per connection')
    millis = 1000
    for (let i = 0; i < 20 && b.size > 4; i++) await round(b, b.size, 5000 + i * 100)
    assert.equal(b.size, 4)
  })

  test('tasksPerMessage fixes the size whatever the tasks take; 1 sends each alone', async () => {
    const { crew, messages } = recordingCrew(() => 1000)
    const fixed = new TaskBatcher(crew, { tasksPerMessage: 6, perWorker: 2, threads: 1 })
    await round(fixed, 14)
    await round(fixed, 14, 100)
    assert.deepEqual(messages, [6, 6, 2, 6, 6, 2])
    messages.length = 0
    const alone = new TaskBatcher(crew, { tasksPerMessage: 1, perWorker: 2, threads: 1 })
    await round(alone, 3)
    assert.deepEqual(messages, [1, 1, 1])
  })

  test('a worker of one connection with slow tasks sends each alone and still learns when they get fast', async () => {
    let millis = 800
    const { crew, messages } = recordingCrew(() => millis)
    const b = new TaskBatcher(crew, { perWorker: 1, threads: 1 })
    await round(b, 3)
    assert.deepEqual(messages, [1, 1, 1])
    millis = 1
    for (let i = 0; i < 100 && b.size < MOST_PER_CONNECTION; i++) await round(b, 1, 10 + i)
    assert.equal(b.size, MOST_PER_CONNECTION)
  })

  test('skips (keys the claim found done) and failures do not count as task time', async () => {
    let skip = true
    let millis = 0.2
    const { crew } = recordingCrew(
      () => millis,
      () => skip,
    )
    const b = new TaskBatcher(crew, { perWorker: 2, threads: 1 })
    await round(b, 2)
    await round(b, 2, 10)
    assert.equal(b.size, 2, 'skips of 0.2 ms made the messages bigger')
    skip = false
    millis = 1000
    await round(b, 2, 20)
    assert.equal(b.size, 2)
    skip = true
    millis = 0.2
    for (let i = 0; i < 10; i++) await round(b, 2, 30 + i * 2)
    assert.equal(b.size, 2, 'skips pulled the average of one-second tasks down')
  })

  test('enough in flight is counted in messages: a big message of tasks that turned slow does not hold back the next, smaller ones', async () => {
    // A stand-in crew that answers a message only when told to.
    const pending: Array<() => void> = []
    let millis = 2
    const crew = {
      dispatch: async () => ({ ok: true, value: undefined, millis, workerId: 1 }),
      dispatchBatch: (es: TaskEnvelope[]) => new Promise<TaskOutcome[]>((resolve) => pending.push(() => resolve(es.map(() => ({ ok: true, value: undefined, millis, workerId: 1 }))))),
    } as unknown as Crew
    const b = new TaskBatcher(crew, { perWorker: 2, threads: 2 })
    // The newest message answers first: the long one stays out.
    const answer = async (): Promise<void> => {
      pending.pop()!()
      await new Promise((r) => setImmediate(r))
    }
    // Four messages of 2 (one per connection until outcomes arrive): two per thread, and that is enough.
    const first = round(b, 8)
    await new Promise((r) => setImmediate(r))
    assert.equal(pending.length, 4)
    assert.equal(b.full, true)
    for (let i = 0; i < 4; i++) await answer()
    await first
    // 2 ms tasks: messages of 32. One goes out and runs long (its tasks turn slow).
    assert.equal(b.size, 32)
    void round(b, 32, 100)
    await new Promise((r) => setImmediate(r))
    assert.equal(pending.length, 1)
    assert.equal(b.full, false)
    // The other thread's messages answer slow: the size falls to one per connection…
    millis = 1000
    const more = round(b, 64, 200)
    await new Promise((r) => setImmediate(r))
    await answer()
    await answer()
    for (let i = 0; i < 20 && b.size > 2; i++) {
      void round(b, b.size, 1000 + i * 100)
      await new Promise((r) => setImmediate(r))
      while (pending.length > 1) await answer()
    }
    assert.equal(b.size, 2)
    // …and with only the long message of 32 still out, more may go: 32 tasks in flight are one message, not a full window.
    assert.equal(pending.length, 1)
    assert.equal(b.full, false)
    pending.pop()!()
    await more
  })
})
