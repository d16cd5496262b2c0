// Statement level: pgcrew's Database against a raw pg.Pool and postgres.js, same statements, same connections.
// Like with like: pgcrew runs statements with parameters as named prepared statements (its default,
// prepareStatements), postgres.js with { prepare: true }, so the pg.Pool side names its statements too;
// statements without parameters (SELECT 1, BEGIN, COMMIT) go unnamed on pgcrew and pg.Pool alike.
//
// Each client runs in a process of its own (statementChild), as a program using it would: in one shared
// process pgcrew's transactions put an AsyncLocalStorage in use, and on Node 20 that slows every promise
// of the process, pg.Pool's and postgres.js's too. This file is also the child; it loads only its client.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { idStream, READ_SQL, UPDATE_SQL } from './workload.ts'

export type StatementKind = 'point read' | 'SELECT 1' | 'write transaction'
export type Client = 'pgcrew' | 'pg.Pool' | 'postgres.js'
export const STATEMENT_KINDS: readonly StatementKind[] = ['point read', 'SELECT 1', 'write transaction']

/** One client with its connections open: runs one statement of a kind, and closes. */
export interface StatementSide {
  step(kind: StatementKind, id: number): Promise<unknown>
  close(): Promise<void>
}

/** `client` with `connections` connections, every one of them open before this resolves. */
export async function openSide(url: string, client: Client, connections: number): Promise<StatementSide> {
  const SLEEP = 'SELECT pg_sleep(0.05)'
  let side: StatementSide
  let sleep: () => Promise<unknown>
  if (client === 'pgcrew') {
    const { Database } = await import('../src/database/database.ts')
    const db = new Database({ connectionString: url, max: connections })
    await db.connect()
    sleep = () => db.query(SLEEP)
    side = {
      step: (kind, id) => (kind === 'SELECT 1' ? db.query('SELECT 1') : kind === 'point read' ? db.query(READ_SQL, [id]) : db.transaction((tx) => tx.query(UPDATE_SQL, [id]))),
      close: () => db.close(),
    }
  } else if (client === 'pg.Pool') {
    const { default: pg } = await import('pg')
    const pool = new pg.Pool({ connectionString: url, max: connections })
    pool.on('error', () => {})
    const write = async (id: number): Promise<void> => {
      const c = await pool.connect()
      try {
        await c.query('BEGIN')
        await c.query({ name: 'bench_update', text: UPDATE_SQL, values: [id] })
        await c.query('COMMIT')
        c.release()
      } catch (error) {
        c.release(true)
        throw error
      }
    }
    sleep = () => pool.query(SLEEP)
    side = {
      step: (kind, id) => (kind === 'SELECT 1' ? pool.query('SELECT 1') : kind === 'point read' ? pool.query({ name: 'bench_read', text: READ_SQL, values: [id] }) : write(id)),
      close: () => pool.end(),
    }
  } else {
    const { default: postgres } = await import('postgres')
    const sql = postgres(url, { max: connections, onnotice: () => {} })
    sleep = () => sql.unsafe(SLEEP)
    side = {
      step: (kind, id) =>
        kind === 'SELECT 1' ? sql`SELECT 1` : kind === 'point read' ? sql.unsafe(READ_SQL, [id], { prepare: true }) : sql.begin((tx) => tx.unsafe(UPDATE_SQL, [id], { prepare: true })),
      close: () => sql.end({ timeout: 5 }),
    }
  }
  // Open every connection before timing: as many statements at once as there are connections.
  await Promise.all(Array.from({ length: connections }, sleep))
  return side
}

/** Statements per second for `ms` with `loops` async loops (one per connection). */
export async function statementRate(side: StatementSide, kind: StatementKind, loops: number, ms: number, seed: number): Promise<number> {
  const next = idStream(seed)
  const start = performance.now()
  const deadline = start + ms
  let ops = 0
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await side.step(kind, next())
      ops++
    }
  }
  await Promise.all(Array.from({ length: loops }, loop))
  return ops / ((performance.now() - start) / 1000)
}

// The child: one client, driven by its parent over IPC; it times each measurement itself.
interface ChildArgs {
  url: string
  client: Client
  connections: number
}
type ToChild = { kind: StatementKind; ms: number; seed: number } | 'close'
type FromChild = { ready: true } | { rate: number; cpu: number }

if (process.send && process.env.PGCREW_BENCH_STATEMENT_CHILD) {
  const args = JSON.parse(process.env.PGCREW_BENCH_STATEMENT_CHILD) as ChildArgs
  const side = await openSide(args.url, args.client, args.connections)
  // Every kind once before any is timed: JIT, plans, and for pgcrew its transactions' storage in use
  // from the start, as in any program that runs transactions (on Node 20 it slows each promise after).
  for (const kind of STATEMENT_KINDS) await statementRate(side, kind, args.connections, 200, 3)
  process.on('message', (m: ToChild) => {
    if (m === 'close') return void side.close().finally(() => process.disconnect())
    const c0 = process.cpuUsage()
    void statementRate(side, m.kind, args.connections, m.ms, m.seed).then((rate) => {
      const c = process.cpuUsage(c0)
      process.send!({ rate, cpu: (c.user + c.system) / 1e6 } satisfies FromChild)
    })
  })
  process.send({ ready: true } satisfies FromChild)
}

/** A client in a child process of its own; `rate` runs one measurement there: statements per second, and the child's CPU seconds over it. */
export interface StatementChild {
  rate(kind: StatementKind, ms: number, seed: number): Promise<{ rate: number; clientCpu: number }>
  close(): Promise<void>
}

export async function statementChild(url: string, client: Client, connections: number): Promise<StatementChild> {
  const args: ChildArgs = { url, client, connections }
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, PGCREW_BENCH_STATEMENT_CHILD: JSON.stringify(args) }, stdio: 'inherit' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const next = (): Promise<FromChild> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null, signal: string | null): void => reject(new Error(`statement child (${client}) exited with ${code ?? signal}`))
      child.once('exit', onExit)
      child.once('message', (m) => {
        child.removeListener('exit', onExit)
        resolve(m as FromChild)
      })
    })
  await next()
  return {
    rate: async (kind, ms, seed) => {
      const reply = next()
      child.send({ kind, ms, seed } satisfies ToChild)
      const { rate, cpu } = (await reply) as { rate: number; cpu: number }
      return { rate, clientCpu: cpu }
    },
    close: async () => {
      if (child.connected) child.send('close' satisfies ToChild)
      await exited
    },
  }
}
