// The record store, end to end: `npx tsx examples/record-store.ts`. With nothing configured (no
// profile, no PG* variable) openStore() starts a throwaway PostgreSQL of its own and removes it on close.
import { openStore } from '../src/store/store.ts'

type Category = { id: number; name: string }
type Item = { id: number; category_id: number; name: string; qty: number | null }

await using store = await openStore()
await store.db.query(`CREATE TABLE categories (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
  CREATE TABLE items (id serial PRIMARY KEY, category_id int NOT NULL REFERENCES categories, name text NOT NULL, qty int)`)

// Tables: plain rows in, rows as stored out.
const fruit = await store.getOrCreate<Category>('categories', { name: 'fruit' })
const items = store.table<Item>('items')
await items.addMany([
  { category_id: fruit.id, name: 'apple', qty: 3 },
  { category_id: fruit.id, name: 'pear', qty: null },
  { category_id: fruit.id, name: 'plum', qty: 7 },
])
console.log('find', await items.find({ name: ['apple', 'plum'] }, { orderBy: '-qty' }))
console.log('count qty IS NULL', await items.count({ qty: null }))
try {
  await items.find({ nmae: 'apple' } as never)
} catch (e) {
  console.log((e as { code: string }).code, (e as Error).message)
}

// Config: JSON values, updates saved.
await store.setConfig('rate', { perSecond: 10 })
await store.setConfig('rate', { perSecond: 20 })
console.log('config', await store.getConfig('rate'))

// Readings and the latest N per series, in one statement.
for (let i = 0; i < 5; i++) await store.addReading('temperature', 20 + i, { at: new Date(Date.UTC(2026, 0, 1, 0, i)) })
console.log(
  'latest',
  (await store.latest({ series: 'temperature', limit: 2 })).map((r) => [r.value, r.at.toISOString()]),
)

// Events, and a logging session.
const event = await store.logEvent('sensor 3 is not answering', { severity: 'warning' })
await store.handle(event.id)
const session = await store.startSession({ name: 'calibration' })
await store.queue({ step: 'zero', ok: true })
await store.queue({ step: 'span', ok: false })
await store.stopSession()
console.log(
  'last',
  (await store.last(session, 10)).map((m) => m.message),
)
console.log(
  'sessions',
  (await store.sessions()).map(({ id, name, count }) => ({ id, name, count })),
)
