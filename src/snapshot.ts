import type { ConnectionSettings } from './connection-params.ts'
import type { RoleChoice } from './database.ts'
import type { DatabaseOptions } from './options.ts'

/**
 * What `db.snapshot()` returns: a plain, structured-cloneable description of a Database — never a
 * live socket. `secret` holds an explicitly given password as bytes so that logging the snapshot
 * does not print it; treat the snapshot as confidential all the same.
 */
export interface DatabaseSnapshot {
  version: 1
  options: Omit<DatabaseOptions, 'env' | 'onConnect' | 'onWarning' | 'password' | 'connectionString'>
  settings: ConnectionSettings
  /** Server settings from a pq:// IRI, applied on connect. */
  serverSettings: Record<string, string>
  role: RoleChoice
  dbversion?: string
  /** onConnect hooks given as module paths; workers import and run them. */
  hookModules: string[]
  /** onConnect hooks given as functions: they cannot cross threads. */
  functionHooks: number
  secret?: Uint8Array
}

/** Turn a snapshot back into constructor options plus the state a switch would have set. */
export function restoreSnapshotOptions(snapshot: DatabaseSnapshot): {
  options: DatabaseOptions
  password?: string
  role: RoleChoice
  dbversion?: string
  settings: ConnectionSettings
  serverSettings: Record<string, string>
} {
  const options: DatabaseOptions = { ...snapshot.options, onConnect: snapshot.hookModules }
  for (const key of Object.keys(options) as (keyof DatabaseOptions)[]) if (options[key] === undefined) delete options[key]
  const password = snapshot.secret ? new TextDecoder().decode(snapshot.secret) : undefined
  // Settings resolved in the master (connection string, connectFromParameters) are used as they are.
  return { options, password, role: snapshot.role, dbversion: snapshot.dbversion, settings: snapshot.settings, serverSettings: snapshot.serverSettings }
}
