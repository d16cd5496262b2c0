// Where the CPU went during a measurement (Linux /proc; elsewhere every reading is undefined).
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc's utime/stime (USER_HZ): 100 on every Linux build Node supports. */
const HZ = 100

export interface CpuReading {
  /** user+sys of this process, all its threads (process.cpuUsage), in seconds. */
  self: number
  /** user+sys of waited-for children (pgbench, psql): /proc/self/stat cutime+cstime. */
  children: number
  /** The bench's own PostgreSQL server (the postmaster on `port` and its children), not other servers on the machine. */
  postgres: number
  machineBusy: number
  machineTotal: number
}

function fields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** The postmaster listening on this port: its command line holds `-p PORT`. */
export function findPostmaster(port: number): number | undefined {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      if (argv[0]?.endsWith('postgres') && argv.includes('-p') && argv[argv.indexOf('-p') + 1] === String(port)) return Number(pid)
    } catch {
      // gone
    }
  }
  return undefined
}

function serverTicks(postmaster: number | undefined): number {
  if (postmaster === undefined) return NaN
  let total = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const f = fields(readFileSync(`/proc/${pid}/stat`, 'utf8'))
      // utime stime cutime cstime: the server's ended backends are counted in the postmaster's cutime.
      if (Number(pid) === postmaster) total += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
      else if (Number(f[1]) === postmaster) total += Number(f[11]) + Number(f[12])
    } catch {
      // the process ended between readdir and read
    }
  }
  return total
}

export function readCpu(postmaster?: number): CpuReading | undefined {
  try {
    const u = process.cpuUsage()
    const me = fields(readFileSync('/proc/self/stat', 'utf8'))
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = cpu.reduce((a, b) => a + b, 0)
    const idle = cpu[3]! + cpu[4]! // idle + iowait
    return {
      self: (u.user + u.system) / 1e6,
      children: (Number(me[13]) + Number(me[14])) / HZ,
      postgres: serverTicks(postmaster) / HZ,
      machineBusy: (total - idle) / HZ,
      machineTotal: total / HZ,
    }
  } catch {
    return undefined
  }
}

export interface CpuUsed {
  /** Seconds of CPU: the client (this process, or the child it ran), the bench's server, the whole machine. */
  client: number
  postgres: number
  machine: number
  seconds: number
}

/** CPU used between two readings; `child` counts a waited-for child (pgbench) as the client. */
export function cpuUsed(before: CpuReading | undefined, after: CpuReading | undefined, seconds: number, child = false): CpuUsed | undefined {
  if (!before || !after || seconds <= 0) return undefined
  return {
    client: child ? after.children - before.children : after.self - before.self,
    postgres: after.postgres - before.postgres,
    machine: after.machineBusy - before.machineBusy,
    seconds,
  }
}
