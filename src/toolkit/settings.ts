import type pg from 'pg'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { heldClient, onOneClient, run, type ConnectionTarget } from './toolkit-target.ts'

/** A setting value as you would write it in SET: strings, numbers and booleans. */
export type SettingValue = string | number | boolean

/**
 * Run-time settings (SHOW / SET / RESET) of one connection. Settings belong to a session: on a
 * Database the reads go to any connection, while changes need a connection you hold (a transaction,
 * a client) — or a scope, `withSettings(db, values, fn)`, that sets them on one connection for `fn`.
 *
 * @example
 * await db.transaction(async (tx) => { await settings(tx).set('work_mem', '64MB') })
 */
export interface Settings {
  /** The current value, as SHOW prints it (`'4MB'`); throws UndefinedObject for an unknown name. */
  get(name: string): Promise<string>
  /** Several values at once, keyed by the names asked for. */
  getMany(names: readonly string[]): Promise<Record<string, string>>
  /** SET for the session (or with `{ local: true }`, until the current transaction ends). */
  set(name: string, value: SettingValue, options?: { local?: boolean }): Promise<void>
  /** Several SETs in one round trip. */
  setMany(values: Readonly<Record<string, SettingValue>>, options?: { local?: boolean }): Promise<void>
  /** RESET: back to the session default (configuration file, role, database, startup options). */
  reset(name: string): Promise<void>
}

function text(value: SettingValue): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off'
  if (typeof value === 'number' && !Number.isFinite(value)) throw new PgcrewError('INVALID_OPTION', `a setting value must be finite, not ${value}`)
  return String(value)
}

function checkName(name: string): string {
  // set_config/current_setting take the name as a value, so no quoting is needed; this only refuses nonsense early.
  if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(name)) {
    throw new PgcrewError('INVALID_OPTION', `"${String(name)}" is not a setting name (letters, digits, _ and one optional dot for extension settings)`)
  }
  return name
}

async function getMany(client: pg.ClientBase, names: readonly string[], missingOk = false): Promise<Record<string, string>> {
  names.forEach(checkName)
  const { rows } = await run<{ name: string; value: string }>(
    client,
    "SELECT n.name, coalesce(current_setting(n.name, $2), '') AS value FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) ORDER BY n.i",
    [names, missingOk],
  )
  return Object.fromEntries(rows.map((r) => [r.name, r.value]))
}

async function setMany(client: pg.ClientBase, values: Readonly<Record<string, SettingValue>>, local: boolean): Promise<void> {
  const entries = Object.entries(values)
  if (entries.length === 0) return
  const names = entries.map(([n]) => checkName(n))
  const texts = entries.map(([, v]) => text(v))
  await run(client, 'SELECT set_config(n, v, $3) FROM unnest($1::text[], $2::text[]) AS s(n, v)', [names, texts, local])
}

function needsConnection(what: string): never {
  throw new PgcrewError(
    'SETTINGS_NEED_CONNECTION',
    `settings are per connection, so ${what} on a whole Database would change one random pooled connection; ` +
      'use withSettings(db, values, fn), or settings(tx) inside db.transaction / db.withClient',
  )
}

/**
 * Settings of a target: a Database (read-only: get/getMany), a Transaction or a client (everything).
 */
export function settings(target: ConnectionTarget): Settings {
  const held = heldClient(target)
  return {
    get: async (name) => (await onOneClient(target, (c) => getMany(c, [name])))[name] as string,
    getMany: (names) => onOneClient(target, (c) => getMany(c, names)),
    set: async (name, value, options = {}) => {
      if (!held) needsConnection('set()')
      await setMany(held, { [name]: value }, options.local ?? false)
    },
    setMany: async (values, options = {}) => {
      if (!held) needsConnection('setMany()')
      await setMany(held, values, options.local ?? false)
    },
    reset: async (name) => {
      if (!held) needsConnection('reset()')
      // RESET takes an identifier, not a value: quote it as one would be folded by the server (lower case).
      await run(held, `RESET ${checkName(name).toLowerCase()}`)
    },
  }
}

/**
 * Runs `fn` with settings overridden on one connection and puts the previous values back afterwards,
 * also when `fn` throws. On a Database the connection is borrowed for the call (and discarded if the
 * old values cannot be restored, so a pooled connection never leaks an override).
 *
 * @example
 * await withSettings(db, { work_mem: '256MB', statement_timeout: 0 }, (client) => client.query(bigSort))
 */
export async function withSettings<T>(target: ConnectionTarget, values: Readonly<Record<string, SettingValue>>, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  return onOneClient(target, async (client) => {
    const names = Object.keys(values)
    // A custom setting never set in this session (app.tenant) has no value yet: it comes back as ''.
    const previous = await getMany(client, names, true)
    // Inside a transaction both the override and the restore are SET LOCAL: a session-level restore
    // would turn the caller's own SET LOCAL values into session values that outlive the transaction.
    const local = client.getTransactionStatus?.() === 'T'
    await setMany(client, values, local)
    let outcome: { ok: true; value: T } | { ok: false; error: unknown }
    try {
      outcome = { ok: true, value: await fn(client) }
    } catch (error) {
      outcome = { ok: false, error }
    }
    try {
      await setMany(client, previous, local)
    } catch (restoreError) {
      // In a failed transaction the restore cannot run; the rollback undoes session SETs made inside it.
      // Any other failure must not hide fn's own error.
      if (outcome.ok) throw restoreError
    }
    if (!outcome.ok) throw outcome.error
    return outcome.value
  })
}
