import { inspect } from 'node:util'
import type { ConnectionSettings } from '../connect/connection-params.ts'
import type { RoleChoice } from '../connect/connect-target.ts'
import type { DatabaseOptions } from '../connect/connect-options.ts'

/**
 * What `db.snapshot()` returns: a plain, structured-cloneable description of a Database — never a
 * live socket. Secrets (an explicit password, PGPASSWORD) travel as bytes in `secret`; printing or
 * JSON-encoding a snapshot masks them. Treat a snapshot as confidential all the same.
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
  /** The master's PG*, PGCREW_* and home settings (without PGPASSWORD), so workers resolve alike. */
  env: Record<string, string>
  secret?: Uint8Array
}

interface Secrets {
  password?: string
  PGPASSWORD?: string
}

// Exactly the variables pgcrew reads; a pattern such as PG* would also carry a user's own
// PGCREW_DATABASE_URL=postgres://user:secret@… into anything that prints the snapshot.
const ENV_KEYS = [
  'PGHOST',
  'PGPORT',
  'PGDATABASE',
  'PGUSER',
  'PGPASSFILE',
  'PGSERVICE',
  'PGSERVICEFILE',
  'PGSYSCONFDIR',
  'PGSSLMODE',
  'PGAPPNAME',
  'PGCONNECT_TIMEOUT',
  'PGOPTIONS',
  'PGCREW_PROFILE',
  'PGCREW_PROFILES',
  'PGCREW_HOSTNAME',
  'HOME',
  'XDG_CONFIG_HOME',
]

/** The part of an environment a worker needs to resolve profiles and pgpass as the master did. */
export function snapshotEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(ENV_KEYS.flatMap((k) => (env[k] === undefined ? [] : [[k, env[k]!]])))
}

// Methods live on the prototype: a structured clone (workerData) copies only the plain fields.
const SNAPSHOT_PROTO = {
  toJSON(this: DatabaseSnapshot) {
    return { ...this, secret: this.secret ? '***' : undefined }
  },
  [inspect.custom](this: DatabaseSnapshot) {
    return `DatabaseSnapshot ${inspect({ ...this, secret: this.secret ? '***' : undefined }, { depth: 4 })}`
  },
}

/** Build a snapshot; secrets are encoded so that a printed snapshot never shows them. */
export function makeSnapshot(fields: Omit<DatabaseSnapshot, 'secret'> & { secrets: Secrets }): DatabaseSnapshot {
  const { secrets, ...rest } = fields
  const any = secrets.password !== undefined || secrets.PGPASSWORD !== undefined
  const snapshot: DatabaseSnapshot = { ...rest, secret: any ? new TextEncoder().encode(JSON.stringify(secrets)) : undefined }
  return Object.setPrototypeOf(snapshot, SNAPSHOT_PROTO) as DatabaseSnapshot
}

/** Turn a snapshot back into constructor options plus the state a switch would have set. */
export function restoreSnapshotOptions(snapshot: DatabaseSnapshot): {
  options: DatabaseOptions & { env: NodeJS.ProcessEnv }
  password?: string
  role: RoleChoice
  dbversion?: string
  settings: ConnectionSettings
  serverSettings: Record<string, string>
} {
  const secrets: Secrets = snapshot.secret ? (JSON.parse(new TextDecoder().decode(snapshot.secret)) as Secrets) : {}
  const env: NodeJS.ProcessEnv = { ...snapshot.env }
  if (secrets.PGPASSWORD) env.PGPASSWORD = secrets.PGPASSWORD
  const options: DatabaseOptions & { env: NodeJS.ProcessEnv } = { ...snapshot.options, onConnect: snapshot.hookModules, env }
  for (const key of Object.keys(options) as (keyof DatabaseOptions)[]) if (options[key] === undefined) delete options[key]
  // Settings resolved in the master (connection string, connectFromParameters) are used as they are.
  return { options, password: secrets.password, role: snapshot.role, dbversion: snapshot.dbversion, settings: snapshot.settings, serverSettings: snapshot.serverSettings }
}
