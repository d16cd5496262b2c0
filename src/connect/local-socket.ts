// The local-socket rule: a profile whose host is this very machine is reached through the local Unix
// socket (no TCP, no SSL, peer authentication possible), the way people on a database server type
// `psql` without `-h`. A profile shared by a cluster names the database host; on that host itself it
// should not go out through the network card and back.
import { hostname, networkInterfaces } from 'node:os'
import { isIP } from 'node:net'
import { defaultHost } from './connection-params.ts'
import { machineFqdn, type Profile } from './profiles.ts'

function normalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

/**
 * This machine's names: its FQDN (`PGCREW_HOSTNAME` overrides it, and then stands alone), the
 * kernel's host name, and the first label of each.
 */
function machineNames(env: NodeJS.ProcessEnv): Set<string> {
  const names = env.PGCREW_HOSTNAME ? [env.PGCREW_HOSTNAME] : [machineFqdn(env), hostname()]
  return new Set(names.flatMap((n) => [normalName(n), normalName(n).split('.')[0]!]).filter(Boolean))
}

/** This machine's own (non-loopback) addresses. */
function machineAddresses(): Set<string> {
  const out = new Set<string>()
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.internal) out.add(a.address.toLowerCase())
  return out
}

/**
 * Is `host` this machine by name or by address? Loopback (`localhost`, 127.0.0.0/8, ::1) is not:
 * writing it asks for TCP on purpose (an SSH tunnel's local end is the usual case).
 */
export function isThisMachine(host: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (host.startsWith('/') || host === '') return false
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  if (isIP(bare)) return machineAddresses().has(bare)
  return machineNames(env).has(normalName(host))
}

/**
 * Where a connection to `host` should go under the rule: the profile's `socket_dir`, else libpq's
 * default host (its socket directory when it exists, else localhost). Undefined when the rule does
 * not apply: the host did not come from the profile, is not this machine, or `local_socket = false`.
 */
export function localSocketHost(profile: Profile | undefined, host: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!profile?.host || profile.host !== host || profile.local_socket === false) return undefined
  if (!isThisMachine(host, env)) return undefined
  return profile.socket_dir ?? defaultHost()
}
