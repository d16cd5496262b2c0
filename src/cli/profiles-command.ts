import { maskConnectionString } from '../connect/connection-string.ts'
import { showValue } from '../errors/show-value.ts'
import { chooseProfile, loadProfiles, machineFqdn, profileFiles, type Profile, type ProfileSet } from '../connect/profiles.ts'
import { UsageError, expectPositionals, type CliIO, type Command } from './cli-command.ts'
import { keyValues, printJson, println, table, tildify } from './cli-output.ts'

// Shown in place of a profile's password: whether one is set, never what it is.
const SET = '(set)'

/** A profile as plain data for --json and `show`: every key it has, the password as "(set)". */
function describe(profile: Profile): Record<string, unknown> {
  const { name, files, ...keys } = profile
  return { name, ...keys, ...(profile.password !== undefined ? { password: SET } : {}), files: [...files] }
}

function hostPort(p: Profile): string {
  return p.host === undefined ? (p.port === undefined ? '' : `:${p.port}`) : p.port === undefined ? p.host : `${p.host}:${p.port}`
}

/** The profile this host gets, or undefined when none does (list still works then). */
function chosenQuietly(set: ProfileSet, env: NodeJS.ProcessEnv): string | undefined {
  try {
    return chooseProfile(set, undefined, env).profile.name
  } catch {
    return undefined
  }
}

function list(set: ProfileSet, io: CliIO, json: boolean): number {
  const chosen = set.profiles.length ? chosenQuietly(set, io.env) : undefined
  if (json) {
    printJson(io, { files: set.files, chosen: chosen ?? null, profiles: set.profiles.map(describe) })
    return 0
  }
  if (set.profiles.length === 0) {
    println(
      io.stdout,
      `no profiles found; looked in ${profileFiles(io.env)
        .map((f) => tildify(f, io.env))
        .join(', ')}`,
    )
    return 0
  }
  const rows = set.profiles.map((p) => [
    (p.name === chosen ? '* ' : '  ') + p.name,
    hostPort(p),
    p.dbname ?? '',
    p.user ?? '',
    p.admin ?? '',
    p.domain ?? '',
    p.password !== undefined ? SET : '',
    p.files.map((f) => tildify(f, io.env)).join(', '),
  ])
  const headers = ['  name', 'host', 'dbname', 'user', 'admin', 'domain', 'password', 'file']
  // Drop the password column when no profile has one: it would only ever be empty.
  const keep = headers.map((_, i) => i !== 6 || rows.some((r) => r[6] !== ''))
  println(
    io.stdout,
    table(
      headers.filter((_, i) => keep[i]),
      rows.map((r) => r.filter((_, i) => keep[i])),
    ),
  )
  if (chosen) println(io.stdout, `\n* the profile this host (${machineFqdn(io.env)}) gets; 'pgcrew profiles which' says why`)
  return 0
}

function show(set: ProfileSet, name: string, io: CliIO, json: boolean): number {
  const profile = chooseProfile(set, name, io.env).profile
  const data = describe(profile)
  if (json) {
    printJson(io, data)
    return 0
  }
  const pairs: Array<[string, string | undefined]> = Object.entries(data)
    .filter(([k]) => k !== 'files')
    .map(([k, v]) => [k, String(v)])
  pairs.push([profile.files.length > 1 ? 'files' : 'file', profile.files.map((f) => tildify(f, io.env)).join(', ')])
  println(io.stdout, keyValues(pairs))
  return 0
}

function which(set: ProfileSet, io: CliIO, json: boolean): number {
  const fqdn = machineFqdn(io.env)
  const fqdnFrom = io.env.PGCREW_HOSTNAME ? 'PGCREW_HOSTNAME' : 'hostname -f'
  const { profile, reason } = chooseProfile(set, undefined, io.env)
  // Database connects through the local socket when the profile's host is this very machine.
  const viaSocket = profile.host !== undefined && !profile.host.startsWith('/') && profile.host === fqdn
  if (json) {
    printJson(io, { fqdn, fqdnFrom, profile: profile.name, reason, localSocket: viaSocket, details: describe(profile) })
    return 0
  }
  println(
    io.stdout,
    keyValues([
      ['host', `${fqdn} (from ${fqdnFrom})`],
      ['profile', profile.name],
      ['why', reason],
      ['connects', viaSocket ? `through the local socket (the profile's host ${profile.host} is this machine)` : undefined],
    ]),
  )
  return 0
}

export const command: Command = {
  name: 'profiles',
  summary: 'List connection profiles, show one, or say which one this host gets',
  usage: `pgcrew profiles [list | show NAME | which] [--json]

  list       every profile: host, dbname, user, admin, domain and the file it came from (default)
  show NAME  all keys of one profile (a password shows as "(set)")
  which      the profile this host gets and why (PGCREW_PROFILE names one; PGCREW_HOSTNAME
             overrides this machine's FQDN)

Profiles come from config/profiles.ini and ~/.config/pgcrew/profiles.ini (later wins per key);
PGCREW_PROFILES=FILE replaces both.`,
  options: {},
  async run({ values, positionals }, io) {
    const json = values.json === true
    const [sub = 'list', ...args] = positionals
    // Bad usage is reported before any profile file is read.
    if (sub === 'list' || sub === 'which') expectPositionals(args, 0, `${sub} takes no arguments`)
    else if (sub === 'show') {
      if (args.length === 0) throw new UsageError('show needs a profile name: pgcrew profiles show NAME')
      expectPositionals(args, 1, 'show takes one profile name')
    } else throw new UsageError(`unknown subcommand ${showValue(maskConnectionString(sub))}; use list, show NAME or which`)
    const set = loadProfiles({ env: io.env })
    if (sub === 'show') return show(set, args[0]!, io, json)
    return sub === 'which' ? which(set, io, json) : list(set, io, json)
  },
}
