// The record store's addMany against one COPY through copyFrom (issue #13): the same rows into the
// same table, each side on a freshly truncated table. addMany returns every row as stored (ids and
// defaults filled in, in input order), which copyFrom does not; the forced-INSERT side shows what
// choosing COPY by size is worth.
import type { Database } from '../src/database/database.ts'
import { openStore, type Store } from '../src/store/store.ts'

export const STORE_TABLE_SQL = `CREATE TABLE IF NOT EXISTS bench_store (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, value double precision NOT NULL, at timestamptz NOT NULL DEFAULT now())`

type Row = { id?: number; name: string; value: number }

export function storeRows(count: number): Row[] {
  return Array.from({ length: count }, (_, i) => ({ name: `item-${i}`, value: i * 0.37 }))
}

export async function openBenchStores(db: Database): Promise<{ chosen: Store; inserts: Store }> {
  await db.query(STORE_TABLE_SQL)
  return { chosen: await openStore(db, { schema: 'pgcrew_bench' }), inserts: await openStore(db, { schema: 'pgcrew_bench', copyThreshold: Number.MAX_SAFE_INTEGER }) }
}

/** Rows per second of store.table().addMany(rows); checks every row came back, in order. */
export async function viaAddMany(store: Store, rows: Row[]): Promise<number> {
  await store.db.query('TRUNCATE bench_store')
  const start = performance.now()
  const stored = await store.table<Row>('bench_store').addMany(rows)
  const seconds = (performance.now() - start) / 1000
  if (stored.length !== rows.length || stored[rows.length - 1]!.name !== rows[rows.length - 1]!.name) throw new Error('addMany did not return the rows in order')
  return rows.length / seconds
}

/** Rows per second of addMany(rows, { returning: false }): the same choice of COPY, no rows read back. */
export async function viaAddManyCount(store: Store, rows: Row[]): Promise<number> {
  await store.db.query('TRUNCATE bench_store')
  const start = performance.now()
  const count = await store.table<Row>('bench_store').addMany(rows, { returning: false })
  const seconds = (performance.now() - start) / 1000
  if (count !== rows.length) throw new Error(`addMany stored ${count} of ${rows.length} rows`)
  return rows.length / seconds
}

/** Rows per second of db.copyFrom of the same rows as arrays (what a user writes by hand). */
export async function viaCopyRows(db: Database, rows: Row[]): Promise<number> {
  await db.query('TRUNCATE bench_store')
  const start = performance.now()
  const { rows: copied } = await db.copyFrom(
    'bench_store',
    rows.map((r) => [r.name, r.value]),
    { columns: ['name', 'value'] },
  )
  const seconds = (performance.now() - start) / 1000
  if (copied !== rows.length) throw new Error(`copyFrom copied ${copied} of ${rows.length} rows`)
  return rows.length / seconds
}
