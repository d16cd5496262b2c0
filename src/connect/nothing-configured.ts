import { loadProfiles } from './profiles.ts'

/**
 * Is anything at all configured: a profile name (given, or PGCREW_PROFILE), any libpq PG* variable
 * (PGSERVICE included), or a profile in any profiles file? Only with none of them do `pgcrew run`
 * and `openStore()` use pgcrew's own PostgreSQL. Profiles that exist but do not claim this host
 * count as configured: that is NO_PROFILE_MATCHES when the Database connects, since a batch job on
 * a compute node whose name no profile matches must stop, not put its work into a server of its own.
 */
export function isConfigured(profile: string | undefined, env: NodeJS.ProcessEnv): boolean {
  if (profile || env.PGCREW_PROFILE) return true
  if (Object.keys(env).some((k) => k.startsWith('PG') && !k.startsWith('PGCREW_') && env[k])) return true
  return loadProfiles({ env }).profiles.length > 0
}
