import { embeddedDataDir, shownPath } from '../cluster/embedded-default.ts'
import { isConfigured } from '../connect/nothing-configured.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { showValue } from '../errors/show-value.ts'
import { openStore, type Store } from '../store/store.ts'
import { SEVERITIES, type Severity } from '../store/store-schema.ts'
import { UsageError, expectPositionals, type CliIO, type Command } from './cli-command.ts'
import { printJson, println, table } from './cli-output.ts'

/** A config value as typed: JSON when it parses as JSON (42, true, {"a":1}, "quoted"), else the text itself. */
function typedValue(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** A value as people read it: strings bare, everything else as JSON. */
const shown = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value))
const time = (d: Date | null): string =>
  d
    ? d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '-'

/**
 * The store the command reads: the server a profile, --url or PG* settings name; with nothing
 * configured, pgcrew's own PostgreSQL on the project's .pgcrew/data, the one `pgcrew run` uses.
 */
async function open(values: Record<string, unknown>, io: CliIO): Promise<Store> {
  const profile = values.profile as string | undefined
  const url = values.url as string | undefined
  const schema = values.schema as string | undefined
  for (const [flag, v] of [
    ['--profile', profile],
    ['--url', url],
    ['--schema', schema],
  ] as const) {
    if (v === '') throw new UsageError(`${flag} needs a non-empty value`)
  }
  if (url === undefined && !isConfigured(profile, io.env)) {
    const store = await openStore({ persist: embeddedDataDir(), env: io.env, schema })
    if (values.json !== true) println(io.stderr, `pgcrew: nothing configured (no profile, no PG* variable): reading pgcrew's own PostgreSQL, data in ${shownPath(store.server!.dataDir)}`)
    return store
  }
  return openStore({ profile, url, env: io.env, schema })
}

function int(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined
  const n = /^\d+$/.test(String(value)) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} takes a whole number ≥ 1, not ${showValue(String(value))}`)
  return n
}

async function config(store: Store, args: string[], values: Record<string, unknown>, io: CliIO): Promise<number> {
  const [verb, key, value] = args
  const json = values.json === true
  if (verb === 'get') {
    expectPositionals(args, 2, 'store config get takes at most a KEY')
    if (key === undefined) {
      const entries = await store.configEntries()
      if (json) printJson(io, entries)
      else if (entries.length === 0) println(io.stdout, 'no config values')
      else
        println(
          io.stdout,
          table(
            ['key', 'value', 'updated'],
            entries.map((e) => [e.key, shown(e.value), time(e.updatedAt)]),
          ),
        )
      return 0
    }
    const found = await store.getConfig(key)
    if (found === undefined) throw new PgcrewError('STORE_CONFIG_NOT_FOUND', `no config value for ${showValue(key)}; set one with: pgcrew store config set ${key} VALUE`, { details: { key } })
    if (json) printJson(io, { key, value: found })
    else println(io.stdout, shown(found))
    return 0
  }
  if (verb === 'set') {
    if (key === undefined || value === undefined) throw new UsageError('store config set needs a KEY and a VALUE')
    expectPositionals(args, 3, 'store config set takes a KEY and one VALUE; quote a value with spaces')
    const stored = await store.setConfig(key, typedValue(value), { onlyIfMissing: values['only-if-missing'] === true })
    if (json) printJson(io, { key, value: stored })
    else println(io.stdout, `${key} = ${shown(stored)}`)
    return 0
  }
  throw new UsageError(verb === undefined ? 'store config needs get or set' : `store config takes get or set, not ${showValue(verb)}`)
}

export const command: Command = {
  name: 'store',
  summary: "Read and set the record store's config, list its events and sessions",
  usage: `pgcrew store config get [KEY] | config set KEY VALUE [--only-if-missing] | events [--unhandled] [--severity S] [--limit N] | sessions [--profile P] [--url URL] [--schema S] [--json]

  config get [KEY]   print KEY's value (every key without KEY)
  config set KEY VALUE
                     store VALUE under KEY: read as JSON when it is JSON (42, true, {"a":1}),
                     else as the text itself
  --only-if-missing  with config set: keep a value that is already there
  events             the event log, oldest first
  --unhandled        only events nobody has handled yet
  --severity S       only events of severity S or worse (${SEVERITIES.join(', ')})
  --limit N          only the newest N events
  sessions           the logging sessions: id, name, start, stop, messages
  --profile P        use profile P. With nothing configured at all (no profile, no PG* variable),
                     the store of pgcrew's own PostgreSQL in .pgcrew/data (the one pgcrew run uses)
  --url URL          connect to a postgres:// string (its password is used but never shown)
  --schema S         the store's schema (default pgcrew)
  --json             print one JSON document`,
  options: {
    profile: { type: 'string' },
    url: { type: 'string' },
    schema: { type: 'string' },
    'only-if-missing': { type: 'boolean' },
    unhandled: { type: 'boolean' },
    severity: { type: 'string' },
    limit: { type: 'string' },
  },
  async run({ values, positionals }, io) {
    const [what, ...args] = positionals
    if (what !== 'config' && what !== 'events' && what !== 'sessions') {
      throw new UsageError(what === undefined ? 'store needs config, events or sessions' : `store takes config, events or sessions, not ${showValue(what)}`)
    }
    if (what !== 'config') expectPositionals(args, 0, `store ${what} takes options only`)
    const severity = values.severity as string | undefined
    if (severity !== undefined && !(SEVERITIES as readonly string[]).includes(severity)) throw new UsageError(`--severity is one of ${SEVERITIES.join(', ')}, not ${showValue(severity)}`)
    const limit = int(values.limit, '--limit')
    await using store = await open(values, io)
    const json = values.json === true
    // return await: the store must stay open until the command is done (await using closes it on return).
    if (what === 'config') return await config(store, args, values, io)
    if (what === 'events') {
      const events = await store.events({ unhandled: values.unhandled === true, severity: severity as Severity | undefined, limit })
      if (json) printJson(io, events)
      else if (events.length === 0) println(io.stdout, values.unhandled ? 'no unhandled events' : 'no events')
      else
        println(
          io.stdout,
          table(
            ['id', 'at', 'severity', 'handled', 'description'],
            events.map((e) => [String(e.id), time(e.at), e.severity, e.handledAt ? 'yes' : 'no', e.description]),
          ),
        )
      return 0
    }
    const sessions = await store.sessions()
    if (json) printJson(io, sessions)
    else if (sessions.length === 0) println(io.stdout, 'no sessions')
    else
      println(
        io.stdout,
        table(
          ['id', 'name', 'started', 'stopped', 'messages'],
          sessions.map((s) => [String(s.id), s.name ?? '-', time(s.startedAt), s.stoppedAt ? time(s.stoppedAt) : 'open', String(s.count)]),
        ),
      )
    return 0
  },
}
