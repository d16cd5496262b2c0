import cliProgress from 'cli-progress'
import type { DistributedProgress } from './distributed-options.ts'

/** A live view of one machine: its own counts and the pipeline's, every machine included. */
export interface MachineProgress {
  update(state: DistributedProgress): void
  stop(state?: DistributedProgress): void
}

const rate = (s: DistributedProgress): string => (s.elapsedMillis > 0 ? ((s.done * 1000) / s.elapsedMillis).toFixed(0) : '0')

/**
 * A bar of the pipeline's progress (ledger done against done plus the tasks still queued, which is
 * known to a job: `tasksPerJob` per job at most) with this machine's own counts beside it.
 */
export function machineBar(stream: NodeJS.WritableStream, tasksPerJob: number): MachineProgress {
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: ' {bar} pipeline {value}/~{total} done | this machine {mine} done, {rate} tasks/s | skipped {skipped} | failed {failed} | retried {retried}',
      hideCursor: true,
      fps: 4,
    },
    cliProgress.Presets.shades_classic,
  )
  let started = false
  const payload = (s: DistributedProgress) => ({ mine: s.done, rate: rate(s), skipped: s.skipped, failed: s.failed, retried: s.retried })
  const show = (s: DistributedProgress): void => {
    const total = Math.max(1, s.pipelineDone + s.jobsLeft * tasksPerJob)
    if (!started) {
      bar.start(total, s.pipelineDone, payload(s))
      started = true
    }
    bar.setTotal(total)
    bar.update(s.pipelineDone, payload(s))
  }
  return {
    update: show,
    stop: (s) => {
      if (s) show(s)
      if (started) bar.stop()
    },
  }
}

/** Plain lines every `everyMillis`, for logs and pipes. */
export function machineLines(stream: NodeJS.WritableStream, everyMillis = 2000): MachineProgress {
  let last = 0
  const line = (s: DistributedProgress): void => {
    stream.write(
      `progress: this machine done=${s.done} skipped=${s.skipped} failed=${s.failed} retried=${s.retried} rate=${rate(s)}/s | pipeline done=${s.pipelineDone} (ledger) jobs left=${s.jobsLeft}\n`,
    )
  }
  return {
    update: (s) => {
      if (Date.now() - last >= everyMillis) {
        last = Date.now()
        line(s)
      }
    },
    stop: (s) => s && line(s),
  }
}
