import cliProgress from 'cli-progress'
import { formatEta, SmoothedRate } from './pipeline-rate.ts'

/** A live view of a pipeline run. */
export interface ProgressReporter {
  start(total: number | undefined): void
  update(state: ProgressState): void
  stop(state: ProgressState): void
}

export interface ProgressState {
  done: number
  skipped: number
  failed: number
  retried: number
  /** Tasks seen so far (the total, once the source is exhausted). */
  seen: number
  total?: number
  elapsedMillis: number
  /** Set while nothing reaches the server: what is left of the retry window. */
  unreachableMillisLeft?: number
}

/** "server unreachable, retrying for 41 s more" while the server is gone; undefined otherwise. */
export function unreachableNote(s: ProgressState): string | undefined {
  if (s.unreachableMillisLeft === undefined) return undefined
  return `server unreachable, retrying for ${Math.ceil(s.unreachableMillisLeft / 1000)} s more`
}

/** Tasks that ran (done or failed); skips cost nothing and would make the pace look faster than it is. */
const processed = (s: ProgressState): number => s.done + s.failed

/** The widest line the bar draws: the terminal's width (80 when unknown) less one, so it never wraps. */
const lineWidth = (stream: NodeJS.WritableStream): number => Math.max(20, Math.min((stream as { columns?: number }).columns || 80, 200) - 1)

interface BarPayload {
  text: string
  /** 0..1 when the total is known, else undefined (a source of unknown length shows no bar). */
  fraction?: number
}

/** The bar's line: a bar, percentage and ETA only when the total is known; always counts and the smoothed rate. */
export function barLine(s: ProgressState, ratePerSecond: number, etaSeconds: number | undefined): BarPayload {
  const count = s.done + s.skipped + s.failed
  const tail = `skipped ${s.skipped} | ${unreachableNote(s) ?? `failed ${s.failed} | retried ${s.retried}`}`
  const rateText = `${ratePerSecond >= 10 ? ratePerSecond.toFixed(0) : ratePerSecond.toFixed(1)}/s`
  if (s.total === undefined) return { text: `${count} tasks (${s.seen} seen) | ${rateText} | ${tail}` }
  const fraction = s.total > 0 ? Math.min(1, count / s.total) : 1
  return { text: `${Math.floor(fraction * 100)}% ${count}/${s.total} | ${rateText} | ETA ${formatEta(etaSeconds)} | ${tail}`, fraction }
}

/** A cli-progress bar with a smoothed rate and ETA, failures and retries, fitted to the terminal, for a terminal. */
export function barProgress(stream: NodeJS.WritableStream): ProgressReporter {
  const rate = new SmoothedRate()
  const width = lineWidth(stream)
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: (options, _params, payload: BarPayload) => {
        if (payload.fraction === undefined) return ` ${payload.text}`.slice(0, width)
        // The bar takes what the text leaves, between 8 and 30 cells; none at all when numbers are huge.
        const cells = Math.min(30, width - payload.text.length - 2)
        if (cells < 8) return ` ${payload.text}`.slice(0, width)
        const full = Math.round(payload.fraction * cells)
        return ` ${options.barCompleteString!.slice(0, full)}${options.barIncompleteString!.slice(0, cells - full)} ${payload.text}`
      },
      hideCursor: true,
      linewrap: false,
      fps: 8,
    },
    cliProgress.Presets.shades_classic,
  )
  const payload = (s: ProgressState): BarPayload => {
    rate.observe(processed(s), s.elapsedMillis)
    return barLine(s, rate.perSecond, s.total === undefined ? undefined : rate.etaSeconds(s.total - s.done - s.skipped - s.failed))
  }
  // The run ticks on every task; the bar is drawn 8 times a second, so its line is made no more often
  // (the last state of a burst is drawn a moment later, so a quiet spell never shows a stale count).
  let due = 0
  let trailing: NodeJS.Timeout | undefined
  let latest: ProgressState | undefined
  const draw = (s: ProgressState): void => {
    due = s.elapsedMillis + 125
    bar.update(0, payload(s))
  }
  return {
    start: (total) => bar.start(1, 0, payload({ done: 0, skipped: 0, failed: 0, retried: 0, seen: 0, total, elapsedMillis: 0 })),
    update: (s) => {
      if (s.elapsedMillis >= due) return draw(s)
      latest = s
      trailing ??= setTimeout(() => {
        trailing = undefined
        if (latest) draw(latest)
      }, 125).unref()
    },
    stop: (s) => {
      clearTimeout(trailing)
      bar.update(0, payload(s))
      bar.stop()
    },
  }
}

/** "2026-12-02T00:10:03Z": when a line was written, to the second, for logs read later. */
const stamp = (): string => new Date().toISOString().slice(0, 19) + 'Z'

/** Plain periodic lines with a timestamp, for logs and pipes (no terminal control codes). */
export function lineProgress(stream: NodeJS.WritableStream, everyMillis = 2000): ProgressReporter {
  let last = 0
  const rate = new SmoothedRate()
  const line = (s: ProgressState) => {
    rate.observe(processed(s), s.elapsedMillis)
    const counts = unreachableNote(s) ?? `failed=${s.failed} retried=${s.retried} rate=${rate.perSecond.toFixed(0)}/s`
    stream.write(`${stamp()} progress: ${s.done + s.skipped + s.failed}/${s.total ?? `${s.seen}+`} done=${s.done} skipped=${s.skipped} ${counts}\n`)
  }
  return {
    start: () => {
      last = Date.now()
    },
    update: (s) => {
      if (Date.now() - last >= everyMillis) {
        last = Date.now()
        line(s)
      }
    },
    stop: (s) => line(s),
  }
}

/** No output at all (library use, --json). */
export const silentProgress: ProgressReporter = { start() {}, update() {}, stop() {} }
