import { PgcrewError } from '../errors/pgcrew-error.ts'

/** One `update_<app>_<from>_to_<to>.sql` script. */
export interface UpdateScript {
  from: string
  to: string
  file: string
}

const CHUNK = /\d+|\D+/g

function compareSegment(a: string, b: string): number {
  const as = a.match(CHUNK) ?? []
  const bs = b.match(CHUNK) ?? []
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const x = as[i]!
    const y = bs[i]!
    const numeric = /^\d/.test(x) && /^\d/.test(y)
    if (numeric) {
      // Compare digit strings by value without Number(), so 20-digit build numbers stay exact.
      const xv = x.replace(/^0+(?=\d)/, '')
      const yv = y.replace(/^0+(?=\d)/, '')
      if (xv.length !== yv.length) return xv.length < yv.length ? -1 : 1
      if (xv !== yv) return xv < yv ? -1 : 1
    } else if (x !== y) {
      return x < y ? -1 : 1
    }
  }
  return Math.sign(as.length - bs.length)
}

/**
 * Compares versions naturally, dot-separated segment by segment with numbers as numbers:
 * `0.9 < 0.10 < 0.10.1`, and a version is below its own extensions (`1 < 1.0`).
 * @example ['0.10', '0.9'].sort(compareVersions) // ['0.9', '0.10']
 */
export function compareVersions(a: string, b: string): number {
  const as = a.split('.')
  const bs = b.split('.')
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const c = compareSegment(as[i]!, bs[i]!)
    if (c !== 0) return c
  }
  return Math.sign(as.length - bs.length)
}

/** The highest version of a list, or undefined for an empty list. */
export function highestVersion(versions: Iterable<string>): string | undefined {
  let best: string | undefined
  for (const v of versions) if (best === undefined || compareVersions(v, best) > 0) best = v
  return best
}

function reachableFrom(start: string, next: (v: string) => string[]): Set<string> {
  const seen = new Set([start])
  const queue = [start]
  while (queue.length > 0) {
    for (const v of next(queue.shift()!)) {
      if (!seen.has(v)) {
        seen.add(v)
        queue.push(v)
      }
    }
  }
  return seen
}

/**
 * The shortest chain of update scripts from `from` to `to` (breadth-first over the update graph;
 * among equally short chains the one taking the bigger first steps). `[]` when already there.
 * Throws `MIGRATE_DOWNGRADE` when `from` is newer and `MIGRATE_NO_PATH` naming the gap.
 */
export function findUpgradePath(updates: readonly UpdateScript[], from: string, to: string, app = '<app>'): UpdateScript[] {
  if (from === to) return []
  if (compareVersions(from, to) > 0) {
    throw new PgcrewError('MIGRATE_DOWNGRADE', `the database is at version ${from}, newer than ${to}: refusing to downgrade; run the scripts of version ${from} or later (or pass a newer target)`, {
      details: { from, to },
    })
  }
  const outgoing = new Map<string, UpdateScript[]>()
  for (const u of updates) outgoing.set(u.from, [...(outgoing.get(u.from) ?? []), u])
  for (const list of outgoing.values()) list.sort((a, b) => compareVersions(b.to, a.to))

  const cameBy = new Map<string, UpdateScript>()
  const queue = [from]
  const seen = new Set([from])
  while (queue.length > 0) {
    const v = queue.shift()!
    if (v === to) {
      const path: UpdateScript[] = []
      for (let at = to; at !== from; at = cameBy.get(at)!.from) path.unshift(cameBy.get(at)!)
      return path
    }
    for (const u of outgoing.get(v) ?? []) {
      if (!seen.has(u.to)) {
        seen.add(u.to)
        cameBy.set(u.to, u)
        queue.push(u.to)
      }
    }
  }
  throw new PgcrewError('MIGRATE_NO_PATH', noPathMessage(updates, from, to, app), { details: { from, to } })
}

function noPathMessage(updates: readonly UpdateScript[], from: string, to: string, app: string): string {
  const forward = reachableFrom(from, (v) => updates.filter((u) => u.from === v).map((u) => u.to))
  const backward = reachableFrom(to, (v) => updates.filter((u) => u.to === v).map((u) => u.from))
  const stuckAt = highestVersion([...forward].filter((v) => compareVersions(v, to) < 0)) ?? from
  const resumeAt = [...backward].filter((v) => compareVersions(v, stuckAt) > 0).sort(compareVersions)[0]
  const start = forward.size === 1 ? `no update script starts at ${from}` : `the update scripts lead from ${from} up to ${stuckAt}`
  const rest = resumeAt === undefined || resumeAt === to ? `nothing leads on from there to ${to}` : `${to} is reached only from ${resumeAt}`
  return `no upgrade path from ${from} to ${to}: ${start}, and ${rest}; add update_${app}_${stuckAt}_to_${resumeAt ?? to}.sql`
}
