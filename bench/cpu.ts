// Where the CPU went during a measurement (Linux /proc; elsewhere every reading is undefined).
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's utime/stime (USER_HZ): 100 on every Linux build Node supports. */
const HZ = 100

export interface CpuReading {
  /** Busy time of this process (all its threads), of PostgreSQL processes, and of the machine, in seconds. */
  node: number
  postgres: number
  machineBusy: number
  machineTotal: number
}

function ticks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime
}

export function readCpu(): CpuReading | undefined {
  try {
    const node = ticks(readFileSync('/proc/self/stat', 'utf8'))
    let postgres = 0
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') postgres += ticks(readFileSync(`/proc/${pid}/stat`, 'utf8'))
      } catch {
        // the process ended between readdir and read
      }
    }
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = cpu.reduce((a, b) => a + b, 0)
    const idle = cpu[3]! + cpu[4]! // idle + iowait
    return { node: node / HZ, postgres: postgres / HZ, machineBusy: (total - idle) / HZ, machineTotal: total / HZ }
  } catch {
    return undefined
  }
}

/** CPU used between two readings, in cores (1.0 = one core busy the whole time). */
export function coresUsed(before: CpuReading | undefined, after: CpuReading | undefined, seconds: number): { node: number; postgres: number; machine: number } | undefined {
  if (!before || !after || seconds <= 0) return undefined
  return {
    node: (after.node - before.node) / seconds,
    postgres: (after.postgres - before.postgres) / seconds,
    machine: (after.machineBusy - before.machineBusy) / seconds,
  }
}
