// A gate for the store's race tests: crew tasks wait on an advisory lock the test holds, and the test
// opens it once `waiters` of them wait, so that many threads really start at the same moment.
import pg from 'pg'
import { eventually, urlFor } from '../helpers.ts'

export async function closedGate(dbname: string): Promise<{ key: number; openWhen(waiters: number): Promise<void> }> {
  const key = 0x5707e
  const holder = new pg.Client({ connectionString: urlFor(dbname) })
  await holder.connect()
  await holder.query('SELECT pg_advisory_lock($1)', [key])
  return {
    key,
    async openWhen(waiters) {
      try {
        const waiting = async () =>
          (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", [key])).rows[0]!.n >= waiters
        if (!(await eventually(waiting, 120_000))) throw new Error(`fewer than ${waiters} tasks reached the gate in 120 s`)
      } finally {
        await holder.end()
      }
    },
  }
}
