// What a user sees while a run goes on: the bar on a terminal, plain lines otherwise, and, while the
// server cannot be reached, a note that says so in place of the failure and retry counts.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { barProgress, lineProgress, type ProgressState } from '../../src/pipeline/pipeline-progress.ts'
import { collector } from '../helpers.ts'

const state = (extra: Partial<ProgressState> = {}): ProgressState => ({ done: 120, skipped: 3, failed: 0, retried: 7, seen: 300, total: 300, elapsedMillis: 4000, ...extra })

describe('progress output', () => {
  test('plain lines count failures and retries, and say "server unreachable" with the time left while the server is gone', () => {
    const out = collector()
    const progress = lineProgress(out.stream, 0)
    progress.start(300)
    progress.update(state())
    progress.update(state({ unreachableMillisLeft: 40_200 }))
    const [normal, away] = out.text().trimEnd().split('\n')
    assert.equal(normal, 'progress: 123/300 done=120 skipped=3 failed=0 retried=7 rate=30/s')
    assert.equal(away, 'progress: 123/300 done=120 skipped=3 server unreachable, retrying for 41 s more')
  })

  test('the bar shows the same note instead of the failure and retry counts', () => {
    const out = collector()
    Object.assign(out.stream, { isTTY: true, columns: 160, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
    const progress = barProgress(out.stream)
    progress.start(300)
    progress.stop(state({ unreachableMillisLeft: 5_000 }))
    // The last frame the terminal shows (frames are separated by carriage returns and cursor codes).
    const frames = out
      .text()
      .split(/\r|\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/)
      .filter((f) => f.includes('/300'))
    const last = frames.at(-1)!
    assert.match(last, /123\/300 .* skipped 3 \| server unreachable, retrying for 5 s more/)
    assert.doesNotMatch(last, /failed/)
  })
})
