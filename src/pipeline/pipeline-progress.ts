import cliProgress from 'cli-progress'

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

const rate = (s: ProgressState): number => (s.elapsedMillis > 0 ? (s.done * 1000) / s.elapsedMillis : 0)

/** A cli-progress bar with rate, ETA and failures, for a terminal. */
export function barProgress(stream: NodeJS.WritableStream): ProgressReporter {
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: ' {bar} {percentage}% | {value}/{total} | {rate} tasks/s | ETA {eta_formatted} | skipped {skipped} | {status}',
      hideCursor: true,
      etaBuffer: 200,
      fps: 8,
    },
    cliProgress.Presets.shades_classic,
  )
  const payload = (s: ProgressState) => ({ rate: rate(s).toFixed(0), skipped: s.skipped, status: unreachableNote(s) ?? `failed ${s.failed} | retried ${s.retried}` })
  return {
    start: (total) => bar.start(total ?? 0, 0, payload({ done: 0, skipped: 0, failed: 0, retried: 0, seen: 0, elapsedMillis: 0 })),
    update: (s) => {
      if (s.total === undefined && s.seen > bar.getTotal()) bar.setTotal(s.seen)
      if (s.total !== undefined && s.total !== bar.getTotal()) bar.setTotal(s.total)
      bar.update(s.done + s.skipped + s.failed, payload(s))
    },
    stop: (s) => {
      bar.update(s.done + s.skipped + s.failed, payload(s))
      bar.stop()
    },
  }
}

/** Plain periodic lines, for logs and pipes (no terminal control codes). */
export function lineProgress(stream: NodeJS.WritableStream, everyMillis = 2000): ProgressReporter {
  let last = 0
  const line = (s: ProgressState) => {
    const counts = unreachableNote(s) ?? `failed=${s.failed} retried=${s.retried} rate=${rate(s).toFixed(0)}/s`
    stream.write(`progress: ${s.done + s.skipped + s.failed}/${s.total ?? `${s.seen}+`} done=${s.done} skipped=${s.skipped} ${counts}\n`)
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
