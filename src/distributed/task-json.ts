// A distributed run keeps its tasks in the job queue as JSON: a task must come back from
// JSON.parse(JSON.stringify(task)) as it went in, or another machine would run a different task.
/** Where and why a value does not survive a JSON round trip; undefined when it does. */
export function jsonProblem(value: unknown, path = 'task'): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0) ? undefined : `${path} is ${String(value)}, which JSON writes as ${JSON.stringify(value)}`
    case 'bigint':
      return `${path} is a BigInt (${value}n), which JSON cannot hold; pass it as a string`
    case 'undefined':
      return `${path} is undefined, which JSON drops; leave the field out or use null`
    case 'function':
    case 'symbol':
      return `${path} is a ${typeof value}, which JSON drops`
  }
  if (value === null) return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = jsonProblem(value[i], `${path}[${i}]`)
      if (p) return p
    }
    return undefined
  }
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) {
    const kind = (value as object).constructor?.name ?? 'object'
    return `${path} is a ${kind}, which JSON turns into ${JSON.stringify(safeJson(value))?.slice(0, 40) ?? 'nothing'}; pass plain data (a Date as an ISO string)`
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = jsonProblem(v, `${path}.${k}`)
    if (p) return p
  }
  return undefined
}

function safeJson(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value) ?? 'null')
  } catch {
    return null
  }
}
