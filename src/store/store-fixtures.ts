// Fixtures: rows for the application's tables from a YAML or JSON file, loaded the way migrate
// seeds a new database (one transaction, parents before children, sequences moved past given ids).
import type { Database } from '../database/database.ts'
import { insertSeed, loadSeed, type SeedData, type SeedUse } from '../schema/migrate-seed.ts'

/** Options of `loadFixtures`; every field is optional. */
export interface LoadFixturesOptions {
  /** Skip rows already there (by primary key or any unique constraint) instead of failing. Default false. */
  onlyIfMissing?: boolean
}

/** Fixture data: table name (or `schema.table`) → its rows, column → value. */
export type FixtureData = SeedData

const FIXTURES: SeedUse = {
  code: 'STORE_FIXTURES',
  noun: 'fixture',
  missingTable: 'does not exist; create it first (migrate), or fix the name in the fixture file',
  loading: 'loading fixtures into',
}

/** Load fixtures in one transaction, all or nothing; resolves to the rows inserted per table. */
export async function loadFixtures(db: Database, source: string | FixtureData, options: LoadFixturesOptions = {}): Promise<Record<string, number>> {
  const data = await loadSeed(source, FIXTURES)
  return db.transaction((tx) => insertSeed(tx, data, undefined, { onlyIfMissing: options.onlyIfMissing === true, use: FIXTURES }))
}
