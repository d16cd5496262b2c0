// What a user sees while a run goes on: the bar on a terminal, plain lines otherwise, and, while the
// server cannot be reached, a note that says so in place of the failure and retry counts.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { barProgress, lineProgress, type ProgressState } from '../../src/pipeline/pipeline-progress.ts'
import { SmoothedRate } from '../../src/pipeline/pipeline-rate.ts'
import { collector } from '../helpers.ts'

/** What the terminal shows, frame by frame (frames are separated by carriage returns and cursor codes). */
const frames = (text: string): string[] => text.split(/\r|\n|\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/).filter((f) => f.trim() !== '')

function terminal(columns: number) {
  const out = collector()
  Object.assign(out.stream, { isTTY: true, columns, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
  return out
}

const state = (extra: Partial<ProgressState> = {}): ProgressState => ({ done: 120, skipped: 3, failed: 0, retried: 7, seen: 300, total: 300, elapsedMillis: 4000, ...extra })

describe('progress output', () => {
  test('plain lines count failures and retries, and say "server unreachable" with the time left while the server is gone', () => {
    const out = collector()
    const progress = lineProgress(out.stream, 0)
    progress.start(300)
    progress.update(state())
    progress.update(state({ unreachableMillisLeft: 40_200 }))
    const [normal, away] = out.text().trimEnd().split('\n')
    assert.match(normal!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ progress: 123\/300 done=120 skipped=3 failed=0 retried=7 rate=30\/s$/)
    assert.match(away!, /^\S+Z progress: 123\/300 done=120 skipped=3 server unreachable, retrying for 41 s more$/)
    // The timestamp is the time the line was written (to the second).
    assert.ok(Math.abs(Date.parse(normal!.split(' ')[0]!) - Date.now()) < 60_000)
  })

  test('the bar shows the same note instead of the failure and retry counts', () => {
    const out = collector()
    Object.assign(out.stream, { isTTY: true, columns: 160, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
    const progress = barProgress(out.stream)
    progress.start(300)
    progress.stop(state({ unreachableMillisLeft: 5_000 }))
    // The last frame the terminal shows (frames are separated by carriage returns and cursor codes).
    const last = frames(out.text())
      .filter((f) => f.includes('/300'))
      .at(-1)!
    assert.match(last, /123\/300 .* skipped 3 \| server unreachable, retrying for 5 s more/)
    assert.doesNotMatch(last, /failed/)
  })

  test('the ETA comes from a smoothed rate: a burst of a few seconds barely moves it, a lasting change of pace does', () => {
    const rate = new SmoothedRate()
    const total = 100_000
    let done = 0
    let at = 0
    const step = (perSecond: number, seconds: number) => {
      for (let i = 0; i < seconds * 4; i++) {
        done += perSecond / 4
        at += 250
        rate.observe(done, at)
      }
    }
    step(100, 120)
    const before = rate.etaSeconds(total - done)!
    // Three times the pace for two seconds (a batch of cheap tasks): the last 200 updates, as the ETA
    // used to be computed, would now say 300/s and cut the ETA to a third.
    step(300, 2)
    const afterBurst = rate.etaSeconds(total - done)!
    assert.ok(Math.abs(afterBurst - before) / before < 0.1, `a 2 s burst moved the ETA from ${before.toFixed(0)} s to ${afterBurst.toFixed(0)} s`)
    // Half the pace for five minutes: the ETA follows.
    step(50, 300)
    const slowed = rate.etaSeconds(total - done)!
    assert.ok(Math.abs(rate.perSecond - 50) < 5, `rate ${rate.perSecond} after five minutes at 50/s`)
    assert.ok(slowed > 1.6 * before, `ETA ${slowed.toFixed(0)} s after the pace halved, ${before.toFixed(0)} s before`)
  })

  test('with a task source of unknown length the bar shows counts and the rate, no percentage and no ETA', () => {
    const out = terminal(80)
    const progress = barProgress(out.stream)
    progress.start(undefined)
    progress.update(state({ total: undefined, seen: 130, elapsedMillis: 1000 }))
    progress.stop(state({ total: undefined, seen: 300, elapsedMillis: 4000 }))
    const shown = frames(out.text())
    assert.ok(shown.length > 0)
    for (const f of shown) {
      assert.doesNotMatch(f, /%|ETA/, f)
      assert.match(f, /\d+ tasks \(\d+ seen\) \| [\d.]+\/s \| skipped/, f)
    }
    assert.match(shown.at(-1)!, /^ 123 tasks \(300 seen\) \| \d+\/s \| skipped 3 \| failed 0 \| retried 7$/)
  })

  test('the bar fits an 80-column terminal, large counts and the unreachable note included', () => {
    const out = terminal(80)
    const progress = barProgress(out.stream)
    progress.start(10_000_000)
    progress.update(state({ done: 1_234_567, total: 10_000_000, seen: 1_300_000, failed: 12_345, retried: 99_999, elapsedMillis: 3_600_000 }))
    progress.update(state({ done: 1_234_567, total: 10_000_000, seen: 1_300_000, elapsedMillis: 3_601_000, unreachableMillisLeft: 59_000 }))
    progress.stop(state({ done: 5_000_000, total: 10_000_000, seen: 5_000_000, elapsedMillis: 3_700_000 }))
    const shown = frames(out.text())
    assert.ok(
      shown.some((f) => /ETA \d/.test(f)),
      shown.join('\n'),
    )
    for (const f of shown) assert.ok(f.length < 80, `${f.length} columns: ${f}`)
    assert.match(shown.at(-1)!, / 50% 5000003\/10000000 \| /)
  })
})
