import { findService, resolveConnectionParams, type ConnectionParams, type ConnectionSettings } from './connection-params.ts'
import type { Pooling, ResolvedOptions } from './connect-options.ts'
import type { ClientSpec, OnConnectHook } from './connect-client.ts'
import { localSocketHost } from './local-socket.ts'
import type { Profile } from './profiles.ts'

/** Which role a Database acts as: the default, the profile's admin or user, or a named role. */
export type RoleChoice = { kind: 'default' } | { kind: 'admin'; name: string } | { kind: 'user'; name: string } | { kind: 'role'; name: string }

/** Everything that decides where a connection goes; a switch builds a new one of these. */
export interface Target {
  profile?: Profile
  /** Settings from the options and any connection string, without the password. */
  settings: ConnectionSettings
  serverSettings: Record<string, string>
  role: RoleChoice
  dbversion?: string
  pooling: Pooling
  /** An explicit password (option or connection string) for the configured user. */
  password?: string
}

/**
 * Where and as whom a target connects, and how: the params (libpq precedence, role, dbversion,
 * the local socket for a profile naming this machine), read-only or not, the password rule and
 * the hooks every new connection runs.
 */
export function clientSpecFor(target: Target, ctx: { options: ResolvedOptions; password: string | undefined; hooks: readonly OnConnectHook[] }): ClientSpec {
  const { options, password } = ctx
  const env = options.env
  const service = findService(target.settings, target.profile, env)
  const base = resolveConnectionParams(target.settings, target.profile, env, service)
  const role = target.role
  const user = role.kind === 'default' ? base.user : role.name
  const dbname = target.dbversion ? `${base.dbname}_${target.dbversion}` : base.dbname
  const socket = localSocketHost(target.profile, base.host, env)
  const host = socket ?? base.host
  const params: ConnectionParams = Object.freeze({ ...base, host, user, dbname, ...(socket === undefined ? {} : { socketFor: base.host }) })
  // A profile that names a service takes the service's user as its own: becomeUser()'s role, and
  // read-only sessions unless the profile says readonly = false.
  const profileUser = target.profile?.user ?? (target.profile?.service !== undefined ? service?.settings.user : undefined)
  const asUser = role.kind === 'user' || (role.kind === 'default' && profileUser !== undefined && user === profileUser)
  const readOnly = options.readonly ?? (asUser && target.profile?.readonly !== false)
  const serverSettings = target.serverSettings
  const hooks: OnConnectHook[] = []
  if (Object.keys(serverSettings).length) {
    hooks.push(async (client) => {
      for (const [k, v] of Object.entries(serverSettings)) await client.query('SELECT set_config($1, $2, false)', [k, v])
    })
  }
  hooks.push(...ctx.hooks)
  // The explicit password belongs to the configured user; any other role looks its own up. A
  // profile's password is its user's; a service's, whoever the service logs in as (libpq ranks it
  // above PGPASSWORD, as an entry of the connection string).
  const passwordUser = target.settings.user ?? target.profile?.user ?? base.user
  const [stored, storedUser, origin] =
    target.profile?.password !== undefined
      ? [target.profile.password, target.profile.user, `profile "${target.profile.name}"`]
      : service?.password !== undefined
        ? [service.password, base.user, `service "${service.name}" in ${service.file}`]
        : [undefined, target.profile?.user, undefined]
  return {
    params,
    password: password ?? stored,
    passwordUser: password !== undefined ? passwordUser : storedUser,
    passwordOrigin: password !== undefined ? undefined : origin,
    pgpassFile: options.pgpassFile,
    warn: options.onWarning,
    env,
    readOnly,
    connectionTimeoutMillis: options.connectionTimeoutMillis,
    prepareStatements: options.prepareStatements,
    hooks,
  }
}
