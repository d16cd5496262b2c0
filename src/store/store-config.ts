// Config: one JSON value per key, upserted (an update is saved, not just the first write).
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { Database } from '../database/database.ts'
import { toJson } from './store-catalog.ts'
import type { StoreNames } from './store-schema.ts'

/** A config entry, as `store.configEntries()` lists them. */
export interface ConfigEntry {
  key: string
  value: unknown
  updatedAt: Date
}

/** Options of `setConfig`; every field is optional. */
export interface SetConfigOptions {
  /** Keep a value that is already there (the first writer wins). Default false. */
  onlyIfMissing?: boolean
}

function checkKey(key: unknown, what: string): string {
  if (typeof key !== 'string' || key === '') throw new PgcrewError('INVALID_OPTION', `${what} takes a non-empty string key, not ${JSON.stringify(key) ?? typeof key}`)
  return key
}

export async function getConfig<T = unknown>(db: Database, n: StoreNames, key: string): Promise<T | undefined> {
  checkKey(key, 'getConfig()')
  const { rows } = await db.query<{ value: T }>(`SELECT value FROM ${n.config} WHERE key = $1`, [key])
  return rows[0]?.value
}

/** Store `value` (any JSON value) under `key`; resolves to the value the key now holds. */
export async function setConfig<T = unknown>(db: Database, n: StoreNames, key: string, value: T, options: SetConfigOptions = {}): Promise<T> {
  checkKey(key, 'setConfig()')
  const json = toJson(value, `setConfig(${JSON.stringify(key)})`)
  if (!options.onlyIfMissing) {
    const { rows } = await db.query<{ value: T }>(
      `INSERT INTO ${n.config} (key, value) VALUES ($1, $2::jsonb)
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = clock_timestamp() RETURNING value`,
      [key, json],
    )
    return rows[0]!.value
  }
  const { rows } = await db.query<{ value: T }>(`INSERT INTO ${n.config} (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO NOTHING RETURNING value`, [key, json])
  if (rows[0]) return rows[0].value
  // ON CONFLICT waited for the other writer to commit; this new statement sees its value.
  return (await getConfig<T>(db, n, key)) as T
}

export async function deleteConfig(db: Database, n: StoreNames, key: string): Promise<boolean> {
  checkKey(key, 'deleteConfig()')
  return ((await db.query(`DELETE FROM ${n.config} WHERE key = $1`, [key])).rowCount ?? 0) > 0
}

export async function configEntries(db: Database, n: StoreNames): Promise<ConfigEntry[]> {
  const { rows } = await db.query<ConfigEntry>(`SELECT key, value, updated_at AS "updatedAt" FROM ${n.config} ORDER BY key`)
  return rows
}
