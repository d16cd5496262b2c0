// The bench's BENCH_* settings: each a whole number ≥ 1. A typo (BENCH_REPS=0, BENCH_TASKS=12k) stops
// the bench before it starts a server, saying which variable and what to do, instead of running with
// NaN or no repetitions and writing a table of n/a.

/** The whole number in `env[name]`, or `fallback` when unset or empty. Exits 2 with a message otherwise. */
export function benchSetting(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  const value = Number(raw.replaceAll('_', ''))
  if (Number.isSafeInteger(value) && value >= 1) return value
  return refuse(`${name}=${JSON.stringify(raw)} is not a whole number ≥ 1; set one (digits, _ allowed: 20_000) or unset it for the default, ${fallback}`)
}

/** The sections named in `env[name]` (comma-separated), or `fallback`; an unknown name exits 2 with the known ones. */
export function benchSections<S extends string>(name: string, known: readonly S[], fallback: readonly S[], env: NodeJS.ProcessEnv = process.env): Set<S> {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return new Set(fallback)
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const unknown = names.filter((s) => !(known as readonly string[]).includes(s))
  if (unknown.length || names.length === 0)
    return refuse(`${name}=${JSON.stringify(raw)}: ${unknown.length ? `no section ${unknown.map((u) => JSON.stringify(u)).join(', ')}` : 'no section named'}; choose from ${known.join(', ')}`)
  return new Set(names as S[])
}

function refuse(message: string): never {
  console.error(`bench: ${message}`)
  process.exit(2)
}
