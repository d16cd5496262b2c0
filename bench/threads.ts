// CPU per thread of this process, by thread (Linux /proc/self/task): which thread the client's CPU went to.
// Threads that end (a crew's workers at close) take their counters with them, so this samples while
// the run goes on and keeps each thread's last reading.
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's utime/stime (USER_HZ). */
const HZ = 100

function read(into: Map<string, { name: string; ticks: number }>): void {
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      const name = tid === String(process.pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      into.set(tid, { name, ticks: Number(f[11]) + Number(f[12]) })
    } catch {
      // the thread ended between readdir and read
    }
  }
}

/** Start sampling; the returned function stops and gives CPU seconds per thread name since the start. */
export function sampleThreads(everyMillis = 100): () => Map<string, number> {
  const before = new Map<string, { name: string; ticks: number }>()
  const last = new Map<string, { name: string; ticks: number }>()
  read(before)
  const timer = setInterval(() => read(last), everyMillis)
  timer.unref()
  return () => {
    clearInterval(timer)
    read(last)
    const out = new Map<string, number>()
    for (const [tid, x] of last) out.set(x.name, (out.get(x.name) ?? 0) + (x.ticks - (before.get(tid)?.ticks ?? 0)) / HZ)
    return out
  }
}
