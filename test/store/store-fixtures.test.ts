import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { Database } from '../../src/database/database.ts'
import { openStore } from '../../src/store/store.ts'
import { admin, cleanEnv, freshDatabase, scratchDir } from '../helpers.ts'

const fixture = (name: string) => new URL(`../fixtures/store/${name}`, import.meta.url).pathname

async function shop() {
  const { url, dbname } = await freshDatabase('storefix')
  await admin(
    `CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
     CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, total numeric NOT NULL)`,
    [],
    dbname,
  )
  const db = new Database({ connectionString: url, env: cleanEnv(), max: 2 })
  return { db, store: await openStore(db) }
}

test('loadFixtures: YAML and JSON, children listed first, in one transaction; sequences move past the ids', async () => {
  const { db, store } = await shop()
  await using _db = db
  assert.deepEqual(await store.loadFixtures(fixture('shop.yaml')), { orders: 2, customers: 2 })
  assert.deepEqual(await store.loadFixtures(fixture('shop.json')), { customers: 1, orders: 1 })
  const orders = await store.table<{ id: number; customer_id: number; total: string }>('orders').all({ orderBy: 'id' })
  assert.deepEqual(
    orders.map((o) => [o.id, o.customer_id, o.total]),
    [
      [10, 1, '12.5'],
      [11, 2, '3'],
      [12, 3, '1'],
    ],
  )
  const next = await store.table<{ id: number; name: string }>('customers').add({ name: 'Barbara' })
  assert.equal(next.id, 4, 'the serial moved past the fixture ids')
})

test('loadFixtures onlyIfMissing skips rows already there; without it a duplicate fails and nothing is loaded', async () => {
  const { db, store } = await shop()
  await using _db = db
  await store.loadFixtures(fixture('shop.yaml'))
  const dir = scratchDir()
  const more = join(dir, 'more.yaml')
  writeFileSync(more, 'customers:\n  - { id: 1, name: Ada }\n  - { id: 5, name: Alan }\n')
  await assert.rejects(store.loadFixtures(more), { code: 'STORE_FIXTURES', message: /duplicate key value violates unique constraint "customers_pkey"; nothing was changed/ })
  assert.equal(await store.table('customers').count(), 2, 'all or nothing')
  assert.deepEqual(await store.loadFixtures(more, { onlyIfMissing: true }), { customers: 1 })
  assert.deepEqual(
    (await store.table<{ name: string }>('customers').all({ orderBy: 'id' })).map((c) => c.name),
    ['Ada', 'Grace', 'Alan'],
  )
})

test('bad fixtures are STORE_FIXTURES errors that say which file and what to do', async () => {
  const { db, store } = await shop()
  await using _db = db
  const dir = scratchDir()
  writeFileSync(join(dir, 'flat.yaml'), 'customers: Ada\n')
  writeFileSync(join(dir, 'ghost.yaml'), 'ghosts:\n  - { id: 1 }\n')
  writeFileSync(join(dir, 'bad.yaml'), 'customers:\n  - { id: one, name: x }\n')
  await assert.rejects(store.loadFixtures(join(dir, 'flat.yaml')), { code: 'STORE_FIXTURES', message: /flat\.yaml: customers must hold a list of rows/ })
  await assert.rejects(store.loadFixtures(join(dir, 'ghost.yaml')), { code: 'STORE_FIXTURES', message: /fixture table ghosts does not exist; create it first/ })
  await assert.rejects(store.loadFixtures(join(dir, 'bad.yaml')), {
    code: 'STORE_FIXTURES',
    message: /loading fixtures into customers \(rows 1–1\) failed: invalid input syntax for type integer: "one"/,
  })
  await assert.rejects(store.loadFixtures(join(dir, 'missing.yaml')), { code: 'STORE_FIXTURES', message: /cannot read the fixture file/ })
})
