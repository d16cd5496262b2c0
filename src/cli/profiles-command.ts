import { maskConnectionString } from '../connect/connection-string.ts'
import { showValue } from '../errors/show-value.ts'
import { chooseProfile, loadProfiles, machineFqdn, projectRoot, type Profile, type ProfileSet } from '../connect/profiles.ts'
import { localSocketHost } from '../connect/local-socket.ts'
import { listServices, serviceFiles, type ServiceSummary } from '../connect/service-file.ts'
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

/** A service as plain data for --json and `show`: its entries, the password as "(set)". */
function describeService(service: ServiceSummary): Record<string, unknown> {
  const settings = service.entry?.settings ?? {}
  const keys = {
    host: settings.host,
    port: settings.port,
    dbname: settings.dbname,
    user: settings.user,
    sslmode: settings.sslmode,
    application_name: settings.applicationName,
    connect_timeout: settings.connectTimeoutSeconds,
    options: settings.options,
  }
  const shown = Object.fromEntries(Object.entries(keys).filter(([, v]) => v !== undefined))
  return {
    name: service.name,
    kind: 'service',
    ...shown,
    ...(service.entry?.password !== undefined ? { password: SET } : {}),
    ...(service.problem ? { problem: service.problem } : {}),
    file: service.file,
  }
}

function list(set: ProfileSet, io: CliIO, json: boolean): number {
  const chosen = set.profiles.length ? chosenQuietly(set, io.env) : undefined
  const services = listServices(io.env)
  if (json) {
    printJson(io, { files: set.files, chosen: chosen ?? null, profiles: set.profiles.map(describe), services: services.map(describeService) })
    return 0
  }
  if (set.profiles.length === 0 && services.length === 0) {
    const files = serviceFiles(io.env)
    const looked = [...set.lookedIn, files.user, ...(files.system ? [files.system] : [])]
    println(io.stdout, `no profiles or services found; looked in ${looked.map((f) => tildify(f, io.env)).join(', ')}`)
    return 0
  }
  const rows = set.profiles.map((p) => [
    (p.name === chosen ? '* ' : '  ') + p.name + (p.service === undefined ? '' : ` (service ${p.service})`),
    hostPort(p),
    p.dbname ?? '',
    p.user ?? '',
    p.admin ?? '',
    p.domain ?? '',
    p.password !== undefined ? SET : '',
    p.files.map((f) => tildify(f, io.env)).join(', '),
  ])
  for (const service of services) {
    const s = service.entry?.settings ?? {}
    const where = s.host === undefined ? (s.port === undefined ? '' : `:${s.port}`) : s.port === undefined ? s.host : `${s.host}:${s.port}`
    rows.push([
      `  ${service.name} [service]`,
      service.problem ? '(unusable: pgcrew profiles show NAME says why)' : where,
      s.dbname ?? '',
      s.user ?? '',
      '',
      '',
      service.entry?.password !== undefined ? SET : '',
      tildify(service.file, io.env),
    ])
  }
  const headers = ['  name', 'host', 'dbname', 'user', 'admin', 'domain', 'password', 'file']
  // Drop the columns no row uses (password, or admin and domain when only services are listed).
  const keep = headers.map((_, i) => i < 4 || i === 7 || rows.some((r) => r[i] !== ''))
  println(
    io.stdout,
    table(
      headers.filter((_, i) => keep[i]),
      rows.map((r) => r.filter((_, i) => keep[i])),
    ),
  )
  if (services.length) println(io.stdout, `\n[service]: from a libpq service file; use it with PGSERVICE=NAME, --url service=NAME, or service = NAME in a profile`)
  if (chosen) println(io.stdout, `${services.length ? '' : '\n'}* the profile this host (${machineFqdn(io.env)}) gets; 'pgcrew profiles which' says why`)
  return 0
}

function show(set: ProfileSet, name: string, io: CliIO, json: boolean): number {
  const service = set.get(name) ? undefined : listServices(io.env).find((s) => s.name === name)
  if (service) {
    const data = describeService(service)
    if (json) printJson(io, data)
    else println(io.stdout, keyValues(Object.entries(data).map(([k, v]) => [k, k === 'file' ? tildify(String(v), io.env) : String(v)])))
    return 0
  }
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
  const root = io.env.PGCREW_PROFILES ? undefined : projectRoot()
  const files = set.lookedIn.map((f) => ({ file: f, read: set.files.includes(f) }))
  const fileLines = files.map(({ file, read }, i): [string, string] => [i === 0 ? 'files' : '', `${tildify(file, io.env)} (${read ? 'read' : 'not found'})`])
  const project: [string, string] = ['project', root === undefined ? '(PGCREW_PROFILES names the only file)' : tildify(root, io.env)]
  let choice: ReturnType<typeof chooseProfile>
  try {
    choice = chooseProfile(set, undefined, io.env)
  } catch (error) {
    // The files read are most of the answer to "why no profile": show them before the error.
    if (!json) println(io.stdout, keyValues([['host', `${fqdn} (from ${fqdnFrom})`], project, ...fileLines]))
    throw error
  }
  const { profile, reason } = choice
  // Database connects through the local socket when the profile's host is this very machine.
  const socket = profile.host === undefined ? undefined : localSocketHost(profile, profile.host, io.env)
  if (json) {
    printJson(io, { fqdn, fqdnFrom, projectRoot: root ?? null, files, profile: profile.name, reason, localSocket: socket !== undefined, socketHost: socket ?? null, details: describe(profile) })
    return 0
  }
  println(
    io.stdout,
    keyValues([
      ['host', `${fqdn} (from ${fqdnFrom})`],
      project,
      ...fileLines,
      ['profile', profile.name],
      ['why', reason],
      [
        'connects',
        socket === undefined
          ? undefined
          : `through ${socket.startsWith('/') ? `the local socket in ${socket}` : socket} (the profile's host ${profile.host} is this machine; local_socket = false turns this off)`,
      ],
    ]),
  )
  return 0
}

export const command: Command = {
  name: 'profiles',
  summary: 'List connection profiles, show one, or say which one this host gets',
  usage: `pgcrew profiles [list | show NAME | which] [--json]

  list       every profile and service: host, dbname, user, admin, domain and its file (default)
  show NAME  all keys of one profile (a password shows as "(set)")
  which      the profile this host gets and why, and which files were read (PGCREW_PROFILE names
             one; PGCREW_HOSTNAME overrides this machine's FQDN)

Profiles come from config/profiles.ini at the project root (the nearest directory up with a
package.json) and ~/.config/pgcrew/profiles.ini (later wins per key); PGCREW_PROFILES=FILE replaces
both. list and show NAME include the services of libpq's service files (PGSERVICEFILE or
~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf).`,
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
