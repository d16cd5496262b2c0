import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, hostname } from 'node:os'
import { join } from 'node:path'
import { before, describe, test } from 'node:test'
import { main } from '../../src/cli/cli-main.ts'
import { Database } from '../../src/database/database.ts'
import { admin, atEnd, cleanEnv, collector, freshDatabase, freshRole, scratchDir, server, urlFor, writePgpass } from '../helpers.ts'

// Every password a test hands to pgcrew; no output of any run may contain one.
const secrets = new Set<string>()

interface Run {
  code: number
  stdout: string
  stderr: string
}

function assertNoSecrets(run: Run): void {
  for (const secret of secrets) {
    assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), `a password leaked into the output:\n${run.stdout}\n${run.stderr}`)
  }
}

/** Run pgcrew in this process, as the entry would, with captured output. */
async function pgcrew(argv: string[], env: NodeJS.ProcessEnv = cleanEnv(), signal?: AbortSignal, stdout = collector()): Promise<Run> {
  const stderr = collector()
  const code = await main(argv, { stdout: stdout.stream, stderr: stderr.stream, env, isTTY: false, signal })
  const run = { code, stdout: stdout.text(), stderr: stderr.text() }
  assertNoSecrets(run)
  return run
}

/** Run the real executable in a child process (exit codes, signals). */
function spawnPgcrew(argv: string[], env: NodeJS.ProcessEnv = cleanEnv(), onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run & { signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d
    onStdout?.(stdout, child)
  })
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      const run = { code: code ?? -1, signal, stdout, stderr }
      assertNoSecrets(run)
      resolve(run)
    }),
  )
}

const noStack = (text: string): void => assert.doesNotMatch(text, /^\s+at /m, `a stack trace was printed:\n${text}`)

describe('usage: --help, unknown commands and flags', () => {
  test('pgcrew --help and pgcrew alone list the commands and exit 0', async () => {
    for (const argv of [['--help'], [], ['-h'], ['help']]) {
      const r = await pgcrew(argv)
      assert.equal(r.code, 0)
      for (const name of ['profiles', 'check', 'tmp']) assert.match(r.stdout, new RegExp(`^  ${name}  `, 'm'))
      assert.equal(r.stderr, '')
    }
  })

  test('every command has --help on stdout with exit 0', async () => {
    for (const name of ['profiles', 'check', 'tmp']) {
      for (const argv of [
        [name, '--help'],
        [name, '-h'],
        ['help', name],
      ]) {
        const r = await pgcrew(argv)
        assert.equal(r.code, 0, argv.join(' '))
        assert.match(r.stdout, new RegExp(`^Usage: pgcrew ${name}`))
        assert.match(r.stdout, /--json/)
      }
    }
  })

  test('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }
    assert.deepEqual(await pgcrew(['--version']), { code: 0, stdout: version + '\n', stderr: '' })
    assert.deepEqual(JSON.parse((await pgcrew(['--version', '--json'])).stdout), { version })
  })

  test('an unknown command exits 2 with a suggestion and a hint to run --help', async () => {
    const r = await pgcrew(['chek'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.equal(r.stderr, `pgcrew: unknown command "chek" (did you mean "check"?)\nRun 'pgcrew --help' for usage.\n`)
  })

  test('unknown flags, missing values and stray arguments exit 2 and name the problem', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['check', '--prof', 'x'], /^pgcrew check: unknown option --prof \(did you mean --profile\?\)$/m],
      [['check', '--profile'], /^pgcrew check: option --profile needs a value$/m],
      [['check', 'extra'], /^pgcrew check: unexpected argument "extra"/m],
      [['check', '--dbversion', 'x;drop'], /--dbversion "x;drop" may hold only/],
      [['profiles', 'show'], /^pgcrew profiles: show needs a profile name/m],
      [['profiles', 'lst'], /^pgcrew profiles: unknown subcommand "lst"/m],
      [['tmp', '--nmp'], /^pgcrew tmp: unknown option --nmp \(did you mean --npm\?\)$/m],
      [['--verbose'], /^pgcrew: unknown option --verbose/m],
      [['run', 'p.ts', '--threads', '1e3'], /^pgcrew run: --threads takes a whole number from 1 to 1024, or auto, not "1e3"$/m],
      [['run', 'p.ts', '--threads', 'Auto'], /^pgcrew run: --threads takes a whole number from 1 to 1024, or auto, not "Auto"$/m],
      [['run', 'p.ts', '--in-process', '--threads', 'auto'], /--in-process runs the one worker in this process: it takes no --threads/],
      [['run', 'p.ts', '--distributed', '--threads', 'auto'], /--distributed does not take --threads auto: give each machine its number of threads/],
      [['run', 'p.ts', '--threads', '99999999999999999999'], /--threads takes a whole number from 1 to 1024/],
      [['run', 'p.ts', '--retries', '0x10'], /--retries takes a whole number from 0 to 1000, not "0x10"/],
      [['run', 'p.ts', '--retry-window', '1.5'], /--retry-window takes a whole number from 0 to 86400, not "1.5"/],
      [['run', 'p.ts', '--budget', '-5'], /^pgcrew run: option --budget got a value starting with "-"; negative numbers are not allowed/m],
    ]
    for (const [argv, message] of cases) {
      const r = await pgcrew(argv)
      assert.equal(r.code, 2, argv.join(' '))
      assert.match(r.stderr, message)
      assert.match(r.stderr, /^Run 'pgcrew( \w+)? --help' for usage\.$/m)
      assert.equal(r.stderr.trim().split('\n').length, 2, r.stderr)
    }
  })

  test('regression: a flag whose value was forgotten says it needs a value, not "negative numbers are not allowed"', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['check', '--profile', '--json'], /^pgcrew check: option --profile needs a value, but the next word --json is an option; write --profile VALUE$/m],
      [['check', '--as', '-h'], /^pgcrew check: option --as needs a value, but the next word -h is an option/m],
      [['check', '--profile', '--jsno'], /^pgcrew check: option --profile needs a value, but the next word --jsno looks like an option/m],
      [['check', '--profile', '-odd'], /^pgcrew check: option --profile needs a value, but the next word -odd starts with "-"; if that is the value, write --profile=-odd$/m],
    ]
    for (const [argv, message] of cases) {
      const r = await pgcrew(argv)
      assert.equal(r.code, 2, argv.join(' '))
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /negative numbers/)
    }
    assert.equal(JSON.parse((await pgcrew(['check', '--profile', '--json'])).stdout).error.code, 'USAGE')
  })

  test('regression: a 100,000-character or control-character argument is not echoed back whole', async () => {
    const long = 'x'.repeat(100_000)
    for (const argv of [[long], ['check', `--${long}`], ['check', long], ['check', '--dbversion', `v;${long}`], ['profiles', 'lst\u001b[2J' + long]]) {
      const r = await pgcrew(argv)
      assert.equal(r.code, 2)
      assert.ok(r.stderr.length < 400, `${r.stderr.length} characters on stderr: ${r.stderr.slice(0, 200)}`)
      assert.match(r.stderr, /x…/)
      assert.doesNotMatch(r.stderr, /\u001b/)
    }
    const r = await pgcrew(['check', 'a\u001b]0;pwned\u0007b'])
    assert.match(r.stderr, /unexpected argument "a\\u001b\]0;pwned\\u0007b"/)
  })

  test('with --json a usage error is also a JSON error document on stdout', async () => {
    const r = await pgcrew(['check', '--json', '--nope'])
    assert.equal(r.code, 2)
    assert.deepEqual(JSON.parse(r.stdout), { error: { code: 'USAGE', message: 'unknown option --nope' } })
  })
})

describe('pgcrew profiles', () => {
  const profilePassword = 'hunter2-' + Math.random().toString(36).slice(2)
  let dir: string
  let file: string
  before(() => {
    secrets.add(profilePassword)
    dir = scratchDir()
    file = join(dir, 'profiles.ini')
    writeFileSync(
      file,
      [
        '[utah]',
        'host = operations.sdss.org',
        'port = 5433',
        'dbname = sdss5db',
        'user = sdss_user',
        'admin = sdss',
        'domain = .*\\.utah\\.edu',
        '',
        '[withpw]',
        'host = db.example.org',
        'user = alice',
        `password = ${profilePassword}`,
        '',
        '[local]',
        'host = /var/run/postgresql',
        'pooling = per-transaction',
        '',
      ].join('\n'),
    )
    chmodSync(file, 0o600)
  })
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => cleanEnv({ PGCREW_PROFILES: file, PGCREW_HOSTNAME: 'login1.utah.edu', ...extra })

  test('list shows every profile in a table, marks the one this host gets, and a password only as (set)', async () => {
    for (const argv of [['profiles'], ['profiles', 'list']]) {
      const r = await pgcrew(argv, env())
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.split('\n')
      assert.match(lines[0]!, /^ {2}NAME +HOST +DBNAME +USER +ADMIN +DOMAIN +PASSWORD +FILE$/)
      assert.match(r.stdout, /^\* utah +operations\.sdss\.org:5433 +sdss5db +sdss_user +sdss +\.\*\\\.utah\\\.edu +/m)
      assert.match(r.stdout, /^ {2}withpw +db\.example\.org +alice +\(set\) /m)
      assert.ok(r.stdout.includes(file), 'the file each profile came from')
      assert.match(r.stdout, /this host \(login1\.utah\.edu\) gets/)
    }
  })

  test('list --json parses and carries the password only as "(set)"', async () => {
    const r = await pgcrew(['profiles', '--json'], env())
    const doc = JSON.parse(r.stdout) as { chosen: string; files: string[]; profiles: Array<Record<string, unknown>> }
    assert.equal(doc.chosen, 'utah')
    assert.deepEqual(doc.files, [file])
    assert.deepEqual(
      doc.profiles.map((p) => p.name),
      ['utah', 'withpw', 'local'],
    )
    assert.deepEqual(doc.profiles[1], { name: 'withpw', host: 'db.example.org', user: 'alice', password: '(set)', files: [file] })
  })

  test('show NAME prints every key of one profile', async () => {
    const r = await pgcrew(['profiles', 'show', 'withpw'], env())
    assert.equal(r.code, 0)
    assert.equal(r.stdout, `name      withpw\nhost      db.example.org\nuser      alice\npassword  (set)\nfile      ${file}\n`)
    const local = JSON.parse((await pgcrew(['profiles', 'show', 'local', '--json'], env())).stdout)
    assert.deepEqual(local, { name: 'local', host: '/var/run/postgresql', pooling: 'per-transaction', files: [file] })
  })

  test('show of an unknown profile exits 1 listing the known ones', async () => {
    const r = await pgcrew(['profiles', 'show', 'nope'], env())
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^pgcrew: no profile named "nope" — known: utah, withpw, local/)
    assert.equal(r.stderr.trim().split('\n').length, 1)
    const j = await pgcrew(['profiles', 'show', 'nope', '--json'], env())
    assert.equal(JSON.parse(j.stdout).error.code, 'PROFILE_NOT_FOUND')
  })

  test('which says which profile this host gets, from which FQDN, and why', async () => {
    const r = await pgcrew(['profiles', 'which'], env())
    assert.equal(r.code, 0)
    assert.match(r.stdout, /^host +login1\.utah\.edu \(from PGCREW_HOSTNAME\)$/m)
    assert.match(r.stdout, /^profile +utah$/m)
    assert.match(r.stdout, /^why +domain \/\.\*\\\.utah\\\.edu\/ matches this host login1\.utah\.edu$/m)

    const elsewhere = JSON.parse((await pgcrew(['profiles', 'which', '--json'], env({ PGCREW_HOSTNAME: 'laptop.home' }))).stdout)
    assert.equal(elsewhere.profile, 'local')
    assert.match(elsewhere.reason, /no domain matches laptop\.home/)

    const named = JSON.parse((await pgcrew(['profiles', 'which', '--json'], env({ PGCREW_PROFILE: 'withpw' }))).stdout)
    assert.equal(named.profile, 'withpw')
    assert.equal(named.reason, 'named by PGCREW_PROFILE')
  })

  test('list and show include the services of the service files, marked [service], the user file shadowing the system one', async () => {
    const home = join(dir, 'svc-home')
    const etc = join(dir, 'svc-etc')
    mkdirSync(home, { recursive: true })
    mkdirSync(etc, { recursive: true })
    writeFileSync(join(home, '.pg_service.conf'), `# mine\n[obs]\nhost=obs.example.org\nport=5440\ndbname=obsdb\nuser=ann\npassword=${profilePassword}\n[broken]\nhost = x\n`)
    writeFileSync(join(etc, 'pg_service.conf'), '[obs]\nhost=shadowed.example.org\n[site]\nhost=site.example.org\n')
    const svcEnv = env({ HOME: home, PGSYSCONFDIR: etc })
    const r = await pgcrew(['profiles'], svcEnv)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^\* utah +operations\.sdss\.org:5433 /m)
    assert.match(r.stdout, /^ {2}obs \[service\] +obs\.example\.org:5440 +obsdb +ann +\(set\) +~\/\.pg_service\.conf$/m)
    assert.match(r.stdout, new RegExp(`^ {2}site \\[service\\] +site\\.example\\.org +${etc}/pg_service\\.conf$`, 'm'))
    assert.match(r.stdout, /^ {2}broken \[service\] +\(unusable: pgcrew profiles show NAME says why\)/m)
    assert.doesNotMatch(r.stdout, /shadowed/)
    assert.match(r.stdout, /\[service\]: from a libpq service file; use it with PGSERVICE=NAME/)

    const doc = JSON.parse((await pgcrew(['profiles', '--json'], svcEnv)).stdout)
    assert.deepEqual(doc.services[0], { name: 'obs', kind: 'service', host: 'obs.example.org', port: 5440, dbname: 'obsdb', user: 'ann', password: '(set)', file: join(home, '.pg_service.conf') })
    assert.match(doc.services[1].problem, /syntax error in service file ".*", line 9: .*write host=value/)

    const shown = await pgcrew(['profiles', 'show', 'obs'], svcEnv)
    assert.equal(shown.stdout, 'name      obs\nkind      service\nhost      obs.example.org\nport      5440\ndbname    obsdb\nuser      ann\npassword  (set)\nfile      ~/.pg_service.conf\n')
  })

  test('which lists the profile files it read and the ones it looked for', async () => {
    const r = await pgcrew(['profiles', 'which'], env())
    assert.match(r.stdout, /^project +\(PGCREW_PROFILES names the only file\)$/m)
    assert.match(r.stdout, new RegExp(`^files +${file} \\(read\\)$`, 'm'))
    // HOME is a directory that does not exist: ~ still stands for it in the output.
    const home = join(dir, 'which-home')
    const cwdProject = join(process.cwd(), 'config', 'profiles.ini')
    const json = JSON.parse((await pgcrew(['profiles', 'which', '--json'], cleanEnv({ HOME: home, PGCREW_HOSTNAME: 'x.utah.edu', PGCREW_PROFILE: 'nope' }))).stdout)
    assert.equal(json.error.code, 'PROFILE_NOT_FOUND')
    // Run from this repository: its config/ holds only the example, unless a developer copied it.
    const text = await pgcrew(['profiles', 'which'], cleanEnv({ HOME: home, PGCREW_HOSTNAME: 'laptop.home' }))
    assert.match(
      text.stdout,
      new RegExp(`^host +laptop\\.home \\(from PGCREW_HOSTNAME\\)\nproject +${process.cwd()}\nfiles +${cwdProject} \\((read|not found)\\)\n +~/\\.config/pgcrew/profiles\\.ini \\(not found\\)\n`),
    )
  })

  test('regression: config/profiles.ini is found from a subdirectory of the project (it was read relative to the current directory)', async () => {
    const project = join(dir, 'myproject')
    const deep = join(project, 'pipelines', 'nightly')
    mkdirSync(join(project, 'config'), { recursive: true })
    mkdirSync(deep, { recursive: true })
    writeFileSync(join(project, 'package.json'), '{ "name": "myproject", "private": true }\n')
    writeFileSync(join(project, 'config', 'profiles.ini'), '[local]\nhost = /var/run/postgresql\ndbname = mine\n')
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'profiles', 'which'], {
      cwd: deep,
      env: cleanEnv({ PGCREW_HOSTNAME: 'laptop.home' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const code = await new Promise((resolve) => child.on('close', resolve))
    assert.equal(code, 0, stderr)
    assert.match(stdout, /^profile +local$/m)
    assert.match(stdout, new RegExp(`^project +${project}$`, 'm'))
    assert.match(stdout, new RegExp(`^files +${project}/config/profiles\\.ini \\(read\\)$`, 'm'))
  })

  test('which on a host no profile claims (and no [local]) exits 1 with one line saying what to do', async () => {
    const only = join(dir, 'only-utah.ini')
    writeFileSync(only, '[utah]\nhost = operations.sdss.org\ndomain = .*\\.utah\\.edu\n')
    const r = await pgcrew(['profiles', 'which'], cleanEnv({ PGCREW_PROFILES: only, PGCREW_HOSTNAME: 'laptop.home' }))
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'pgcrew: no profile matches host laptop.home — known: utah; set PGCREW_PROFILE, pass --profile, or add a [local] profile\n')
  })

  test('a dotted profile name and a world-readable password file are explained, not crashed on', async () => {
    const dotted = join(dir, 'dotted.ini')
    writeFileSync(dotted, '[sdss.utah]\nhost = x\n')
    const r = await pgcrew(['profiles'], cleanEnv({ PGCREW_PROFILES: dotted }))
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^pgcrew: .*profile name "sdss\.utah" contains a dot/)
    noStack(r.stderr)

    const loose = join(dir, 'loose.ini')
    writeFileSync(loose, `[p]\nhost = x\npassword = ${profilePassword}\n`)
    chmodSync(loose, 0o644)
    const l = await pgcrew(['profiles', 'list', '--json'], cleanEnv({ PGCREW_PROFILES: loose }))
    assert.equal(l.code, 1)
    assert.equal(JSON.parse(l.stdout).error.code, 'PROFILE_PASSWORD_INSECURE')
    assert.match(l.stderr, /chmod 600/)
  })
})

describe('pgcrew check', () => {
  let dbname: string
  let owner: { name: string; password: string }
  let reader: { name: string; password: string }
  let dir: string
  let profilesFile: string
  let pgpassFile: string

  before(async () => {
    ;({ dbname } = await freshDatabase('cli'))
    owner = await freshRole('cliowner')
    reader = await freshRole('clireader')
    for (const r of [owner, reader, server()]) secrets.add(r.password)
    await admin(`ALTER DATABASE "${dbname}" OWNER TO "${owner.name}"`)
    const { host, port } = server()
    dir = scratchDir()
    pgpassFile = writePgpass(dir, [`${host}:${port}:*:${owner.name}:${owner.password}`, `${host}:${port}:*:${reader.name}:${reader.password}`])
    profilesFile = join(dir, 'profiles.ini')
    writeFileSync(profilesFile, `[cluster]\nhost = ${host}\nport = ${port}\ndbname = ${dbname}\nuser = ${reader.name}\nadmin = ${owner.name}\ndomain = .*\\.cluster\\.test\n`)
  })
  const profileEnv = (): NodeJS.ProcessEnv => cleanEnv({ PGCREW_PROFILES: profilesFile, PGCREW_HOSTNAME: 'node7.cluster.test', PGPASSFILE: pgpassFile })

  test('check --url reports the server, current_user, database and a writable session', async () => {
    const url = urlFor(dbname, reader)
    const r = await pgcrew(['check', '--url', url])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    const { host, port } = server()
    assert.match(r.stdout, /^server +PostgreSQL \d+/m)
    assert.match(r.stdout, /^profile +\(none: --url\)$/m)
    assert.match(r.stdout, new RegExp(`^host +${host}:${port}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^database +${dbname}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^user +${reader.name}$`, 'm'))
    assert.match(r.stdout, /^read-only +no$/m)
    assert.match(r.stdout, /^pooling +pooled$/m)
  })

  test('regression: PGSERVICE=name check connects where the service file says (PGSERVICE counted as configured, then was ignored)', async () => {
    const { host, port } = server()
    const home = join(dir, 'service-home')
    mkdirSync(home, { recursive: true })
    writeFileSync(join(home, '.pg_service.conf'), `[obs]\nhost=${host}\nport=${port}\ndbname=${dbname}\nuser=${reader.name}\n`)
    const env = cleanEnv({ HOME: home, PGSYSCONFDIR: join(dir, 'no-etc'), PGSERVICE: 'obs', PGPASSFILE: pgpassFile })
    const r = await pgcrew(['check'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^service +obs \(~\/\.pg_service\.conf\)$/m)
    assert.match(r.stdout, new RegExp(`^host +${host}:${port}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^user +${reader.name}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^database +${dbname}$`, 'm'))
    const url = await pgcrew(['check', '--url', 'service=obs', '--json'], { ...env, PGSERVICE: 'nosuch' })
    assert.equal(JSON.parse(url.stdout).service, 'obs')
    const missing = await pgcrew(['check'], { ...env, PGSERVICE: 'obz' })
    assert.equal(missing.code, 1)
    assert.equal(missing.stderr, `pgcrew: definition of service "obz" not found (named by PGSERVICE); looked in ${home}/.pg_service.conf, ${join(dir, 'no-etc')}/pg_service.conf\n`)
  })

  test("check says when a profile's host is this machine and the local socket is used instead", async () => {
    const { port } = server()
    const [{ dirs }] = await admin<{ dirs: string }>("select current_setting('unix_socket_directories') as dirs")
    const socket = dirs.split(',')[0]!.trim()
    const file = join(dir, 'here.ini')
    writeFileSync(file, `[here]\nhost = ${hostname()}\nport = ${port}\ndbname = ${dbname}\nuser = ${reader.name}\nsocket_dir = ${socket}\n`)
    const pgpass = writePgpass(dir, [`${socket}:${port}:*:${reader.name}:${reader.password}`])
    const r = await pgcrew(['check', '--profile', 'here'], cleanEnv({ PGCREW_PROFILES: file, PGPASSFILE: pgpass }))
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, new RegExp(`^host +${socket}:${port}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^via +the local socket: the profile's host ${hostname()} is this machine \\(local_socket = false turns this off\\)$`, 'm'))
    const doc = JSON.parse((await pgcrew(['check', '--profile', 'here', '--json'], cleanEnv({ PGCREW_PROFILES: file, PGPASSFILE: pgpass }))).stdout)
    assert.equal(doc.localSocketFor, hostname())
  })

  test('check --json is one JSON document with the same facts', async () => {
    const r = await pgcrew(['check', '--url', urlFor(dbname, reader), '--json'])
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.currentUser, reader.name)
    assert.equal(doc.database, dbname)
    assert.equal(doc.readOnly, false)
    assert.equal(doc.profile, null)
    assert.match(doc.serverVersion, /^\d+/)
  })

  test('regression: initdb --as user means the profile\'s user, as for check (it tried a role literally named "user")', async () => {
    const scripts = join(dir, 'initdb-as-user')
    mkdirSync(scripts, { recursive: true })
    writeFileSync(join(scripts, 'create_asuser.sql'), 'CREATE TABLE asuser_t (id int);\n')
    const r = await pgcrew(['initdb', '--scripts', scripts, '--app', 'asuser', '--as', 'user', '--dry-run', '--json'], profileEnv())
    assert.doesNotMatch(r.stderr, /role "user"/)
    assert.doesNotMatch(r.stdout + r.stderr, /password authentication failed/)
  })

  test('a profile chosen by hostname: --as user is read-only on the server, --as admin is not', async () => {
    const user = JSON.parse((await pgcrew(['check', '--as', 'user', '--json'], profileEnv())).stdout)
    assert.equal(user.profile, 'cluster')
    assert.equal(user.currentUser, reader.name)
    assert.equal(user.readOnly, true)
    assert.equal(user.role, 'user')

    const adm = await pgcrew(['check', '--as', 'admin'], profileEnv())
    assert.equal(adm.code, 0, adm.stderr)
    assert.match(adm.stdout, /^profile +cluster$/m)
    assert.match(adm.stdout, new RegExp(`^user +${owner.name} \\(--as admin\\)$`, 'm'))
    assert.match(adm.stdout, /^read-only +no$/m)

    // The profile's default role is its user: read-only without asking.
    const plain = JSON.parse((await pgcrew(['check', '--profile', 'cluster', '--json'], profileEnv())).stdout)
    assert.equal(plain.currentUser, reader.name)
    assert.equal(plain.readOnly, true)
  })

  test('check --as ROLE logs in as that role with its own pgpass password', async () => {
    const r = JSON.parse((await pgcrew(['check', '--as', owner.name, '--json'], profileEnv())).stdout)
    assert.equal(r.currentUser, owner.name)
    assert.equal(r.role, 'role')
    assert.equal(r.readOnly, false)
  })

  test('check --dbversion V connects to <dbname>_<V>, and says so when it does not exist', async () => {
    const versioned = `${dbname}_0.2`
    await admin(`CREATE DATABASE "${versioned}"`)
    try {
      const r = JSON.parse((await pgcrew(['check', '--dbversion', '0.2', '--json'], profileEnv())).stdout)
      assert.equal(r.database, versioned)
      assert.equal(r.dbversion, '0.2')
      const missing = await pgcrew(['check', '--dbversion', '9.9'], profileEnv())
      assert.equal(missing.code, 1)
      assert.match(missing.stderr, new RegExp(`^pgcrew: database "${dbname}_9\\.9" does not exist`))
      noStack(missing.stderr)
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${versioned}" WITH (FORCE)`)
    }
  })

  test('check against a closed port exits 1 with one clear line and no stack trace', async () => {
    const closed = `postgres://nobody:${server().password}@127.0.0.1:1/postgres`
    const r = await pgcrew(['check', '--url', closed])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.equal(r.stderr, 'pgcrew: cannot connect to nobody@127.0.0.1:1/postgres: nothing is listening there; is the server running, and are host and port right?\n')
    const j = await pgcrew(['check', '--url', closed, '--json'])
    assert.deepEqual(Object.keys(JSON.parse(j.stdout).error), ['code', 'message'])
    assert.equal(JSON.parse(j.stdout).error.code, 'CONNECTION_REFUSED')
  })

  test('a wrong password names the role and where the password came from, never the password', async () => {
    const wrong = 'not-the-password-' + Math.random().toString(36).slice(2)
    secrets.add(wrong)
    const r = await pgcrew(['check', '--url', urlFor(dbname, { name: reader.name, password: wrong })])
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`^pgcrew: password authentication failed for role "${reader.name}"`))
    assert.match(r.stderr, /the password came from the password option or connection string/)
    assert.equal(r.stderr.trim().split('\n').length, 1)

    // Another role named with --as looks its own password up (pgpass), never reuses the URL's.
    const as = await pgcrew(['check', '--url', urlFor(dbname, reader), '--as', owner.name], cleanEnv({ PGPASSFILE: join(dir, 'absent') }))
    assert.equal(as.code, 1)
    assert.match(as.stderr, new RegExp(`^pgcrew: password authentication failed for role "${owner.name}".*no password was found`))
  })

  test('a malformed --url is bad usage (exit 2), explained with the password masked', async () => {
    const password = 'url-secret-' + Math.random().toString(36).slice(2)
    secrets.add(password)
    for (const url of [`postgres://u:${password}@h:notaport/db`, `mysql://u:${password}@h/db`, `u:${password}@h/db`, `postgres:/u:${password}@h/db`]) {
      const r = await pgcrew(['check', '--url', url, '--json'])
      assert.equal(r.code, 2, url.replace(password, '***'))
      assert.equal(JSON.parse(r.stdout).error.code, 'INVALID_CONNECTION_STRING')
      assert.match(r.stderr, /^pgcrew check: invalid connection string (\w+:\/+)?u:\*\*\*@h/)
    }
    const r = await pgcrew(['check', '--url', `postgres://h/db?password=${password}&nope=1`])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /password=\*\*\*/)
  })

  test('a connection string typed where no argument belongs is never echoed with its password (regression)', async () => {
    const password = 'stray-secret-' + Math.random().toString(36).slice(2)
    secrets.add(password)
    const url = `postgres://u:${password}@127.0.0.1:1/db`
    for (const argv of [['check', url], ['run', url], [url], ['profiles', 'list', url]]) {
      const r = await pgcrew(argv) // assertNoSecrets runs on every output
      assert.ok(r.code === 1 || r.code === 2, `${argv[0]}: exit ${r.code}`)
      assert.match(r.stderr, /u:\*\*\*@127\.0\.0\.1/)
    }
  })

  test('--as admin with no admin configured is an explained failure', async () => {
    const r = await pgcrew(['check', '--url', urlFor(dbname, reader), '--as', 'admin', '--json'])
    assert.equal(r.code, 1)
    assert.equal(JSON.parse(r.stdout).error.code, 'ADMIN_NOT_CONFIGURED')
    assert.match(r.stderr, /^pgcrew: no admin role configured/)
  })

  test("regression: the CLI says --as ROLE and --as admin where the library says becomeAdmin('ROLE') and db.becomeAdmin()", async () => {
    const r = await pgcrew(['check', '--url', urlFor(dbname, reader), '--as', 'admin'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'pgcrew: no admin role configured; add "admin = ROLE" to the profile, or name the role: --as ROLE\n')
    // initdb as the read-only user is refused by migrate, whose message names db.becomeAdmin().
    const scripts = join(dir, 'initdb-read-only')
    mkdirSync(scripts, { recursive: true })
    writeFileSync(join(scripts, 'create_ro.sql'), 'CREATE TABLE ro_t (id int);\n')
    const ro = await pgcrew(['initdb', '--scripts', scripts, '--app', 'ro', '--target', '1', '--as', 'user', '--yes'], profileEnv())
    assert.equal(ro.code, 1)
    assert.match(ro.stderr, /^pgcrew: connected read-only as .*; migrating changes the schema, so connect as the profile's admin \(--as admin\)$/m)
  })

  test('regression: PGCREW_PROFILE=nosuch says the name came from PGCREW_PROFILE', async () => {
    const r = await pgcrew(['check'], { ...profileEnv(), PGCREW_PROFILE: 'clustr' })
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^pgcrew: no profile named "clustr" \(from PGCREW_PROFILE\) \(did you mean "cluster"\?\)/)
    const named = await pgcrew(['check', '--profile', 'clustr'], profileEnv())
    assert.match(named.stderr, /^pgcrew: no profile named "clustr" \(did you mean "cluster"\?\)/)
  })

  test('regression: a port out of range, a bad PGPORT and a bad profile port are explained, naming where each came from', async () => {
    const cases: Array<[string[], NodeJS.ProcessEnv, number, RegExp]> = [
      [
        ['check', '--url', 'postgres://u@127.0.0.1:99999/db'],
        cleanEnv(),
        2,
        /^pgcrew check: invalid connection string postgres:\/\/u@127\.0\.0\.1:99999\/db: the port must be from 1 to 65535, not "99999"$/m,
      ],
      [['check', '--url', 'pq://u@127.0.0.1:0/db'], cleanEnv(), 2, /the port must be from 1 to 65535, not "0"$/m],
      [['check', '--url', 'postgres://u:%ZZpw@127.0.0.1/db'], cleanEnv(), 2, /malformed percent-encoding/],
      [['check'], cleanEnv({ PGHOST: '127.0.0.1', PGPORT: 'abc' }), 1, /^pgcrew: PGPORT in the environment must be a whole number \(decimal digits only\), not "abc"; fix or unset it$/m],
    ]
    for (const [argv, env, code, message] of cases) {
      const r = await pgcrew(argv, env)
      assert.equal(r.code, code, argv.join(' '))
      assert.match(r.stderr, message)
      assert.doesNotMatch(r.stderr, /ZZpw/)
      noStack(r.stderr)
    }
    const bad = join(dir, 'bad-port.ini')
    writeFileSync(bad, '[p]\nhost = 127.0.0.1\nport = 0x1538\n')
    const r = await pgcrew(['check', '--profile', 'p'], cleanEnv({ PGCREW_PROFILES: bad }))
    assert.equal(r.code, 1)
    assert.equal(r.stderr, `pgcrew: ${bad}:3: port in profile "p" must be a whole number (decimal digits only), not "0x1538"\n`)
  })
})

describe('pgcrew run: which server', () => {
  const counter = new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname

  test('regression: profiles that do not match this host stop the run with NO_PROFILE_MATCHES, as check does (it used a temporary server and threw the work away)', async () => {
    const dir = scratchDir()
    const file = join(dir, 'profiles.ini')
    writeFileSync(file, '[cluster]\nhost = db.chpc.utah.edu\ndbname = work\ndomain = .*\\.chpc\\.utah\\.edu\n')
    const env = cleanEnv({ PGCREW_PROFILES: file, PGCREW_HOSTNAME: 'notch042' })
    const check = await pgcrew(['check'], env)
    for (const r of [await pgcrew(['run', counter], env), check]) {
      assert.equal(r.code, 1)
      assert.equal(r.stderr, 'pgcrew: no profile matches host notch042 — known: cluster; set PGCREW_PROFILE, pass --profile, or add a [local] profile\n')
    }
    const json = await pgcrew(['run', counter, '--json'], env)
    assert.equal(json.code, 1)
    assert.equal(JSON.parse(json.stdout).error.code, 'NO_PROFILE_MATCHES')
  })

  test('a PG* variable alone (here PGSERVICE) is a configuration too: never the embedded server', async () => {
    const r = await pgcrew(['run', counter], cleanEnv({ PGSERVICE: 'nosuch', PGSERVICEFILE: join(scratchDir(), 'none.conf') }))
    assert.equal(r.code, 1)
    assert.doesNotMatch(r.stderr, /embedded|temporary/)
    assert.equal(r.stdout, '')
    noStack(r.stderr)
  })
})

describe('pgcrew run: --url, --dbversion, --limit and --dry-run', () => {
  const trial = new URL('../fixtures/pipelines/trial.ts', import.meta.url).pathname
  const urlOf = async (prefix: string): Promise<{ dbname: string; url: string }> => {
    const db = await freshDatabase(prefix)
    secrets.add(server().password)
    return db
  }
  const table = async (dbname: string, name: string): Promise<boolean> => (await admin<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name], dbname))[0]!.t !== null

  test('--url runs against that server with nothing else configured (no embedded server); --dbversion picks <dbname>_<V>', async () => {
    const { dbname, url } = await urlOf('runurl')
    const r = await pgcrew(['run', trial, '--url', url, '--threads', '1', '--json'], cleanEnv({ PGCREW_PROFILES: join(scratchDir(), 'none.ini') }))
    assert.equal(r.code, 1, r.stderr) // key -1 fails on purpose
    assert.deepEqual([JSON.parse(r.stdout).done, JSON.parse(r.stdout).failed, JSON.parse(r.stdout).server], [20, 1, undefined])
    assert.equal(r.stderr, '')
    assert.deepEqual(await admin('SELECT count(*)::int AS c FROM counters WHERE n = 1', [], dbname), [{ c: 20 }])

    await admin(`CREATE DATABASE "${dbname}_v2"`)
    atEnd(() => admin(`DROP DATABASE IF EXISTS "${dbname}_v2" WITH (FORCE)`))
    const v2 = await pgcrew(['run', trial, '--url', url, '--dbversion', 'v2', '--threads', '1', '--limit', '3', '--json'], cleanEnv({ PGCREW_PROFILES: join(scratchDir(), 'none.ini') }))
    assert.equal(JSON.parse(v2.stdout).done, 2, v2.stderr)
    assert.deepEqual(await admin('SELECT key FROM counters WHERE n = 1 ORDER BY key', [], `${dbname}_v2`), [{ key: 1 }, { key: 2 }])
    const bad = await pgcrew(['run', trial, '--url', url, '--dbversion', 'v2; drop'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /^pgcrew run: --dbversion "v2; drop" may hold only letters, digits, _ \. and -$/m)
  })

  test('--threads auto: the summary says how many threads it took and how many it could, and the budget counts them all at 4 connections', async () => {
    const { dbname, url } = await urlOf('runauto')
    const r = await pgcrew(['run', trial, '--url', url, '--threads', 'auto', '--budget', '50'])
    assert.equal(r.code, 1, r.stderr) // key -1 fails on purpose
    const cores = availableParallelism()
    // 21 light tasks keep no thread busy: one thread ran them all.
    assert.match(r.stdout, new RegExp(`^threads +1 \\(auto, up to ${cores}\\), ${2 + 1 + cores * 4} connections at most$`, 'm'))
    assert.match(r.stdout, new RegExp(`^budget +budget 50 \\(explicit\\); wanted 2 \\(main\\) \\+ 1 \\(run history\\) \\+ ${cores} threads? × 4 = ${3 + cores * 4} — fits$`, 'm'))
    assert.match(r.stdout, /^per worker +#\d+: 20$/m)
    assert.deepEqual(await admin('SELECT count(*)::int AS c FROM counters WHERE n = 1', [], dbname), [{ c: 20 }])
  })

  test('--limit N runs only the first N tasks; --dry-run then counts done, failed and still to do, running none and writing nothing', async () => {
    const { dbname, url } = await urlOf('runlimit')
    const dry0 = await pgcrew(['run', trial, '--url', url, '--dry-run', '--json'])
    assert.equal(dry0.code, 0, dry0.stderr)
    assert.deepEqual(JSON.parse(dry0.stdout), { pipeline: 'trial', ledger: '"pgcrew_ledger"', ledgerExists: false, tasks: 21, done: 0, failed: 0, todo: 21 })
    assert.equal(await table(dbname, 'pgcrew_ledger'), false, 'a dry run created the ledger')
    assert.equal(await table(dbname, 'counters'), false, "a dry run ran the pipeline's setup")

    const trialRun = await pgcrew(['run', trial, '--url', url, '--threads', '1', '--limit', '5', '--json'])
    const summary = JSON.parse(trialRun.stdout)
    assert.deepEqual([summary.seen, summary.done, summary.failed], [5, 4, 1])
    assert.deepEqual(
      await admin('SELECT key FROM counters WHERE n = 1 ORDER BY key', [], dbname),
      [1, 2, 3, 4].map((key) => ({ key })),
    )
    assert.deepEqual(await admin('SELECT count(*)::int AS c FROM counters WHERE n = 0', [], dbname), [{ c: 16 }])

    const dry = await pgcrew(['run', trial, '--url', url, '--dry-run'])
    assert.equal(dry.code, 0, dry.stderr)
    assert.match(dry.stdout, /^pipeline +trial \(dry run: nothing was run\)$/m)
    assert.match(dry.stdout, /^tasks +21: 4 done, 1 failed, 16 still to do$/m)
    assert.match(dry.stdout, /^a run +would run 17 \(the 1 failed again\)$/m)
    const limited = JSON.parse((await pgcrew(['run', trial, '--url', url, '--dry-run', '--limit', '8', '--json'])).stdout)
    assert.deepEqual([limited.tasks, limited.done, limited.failed, limited.todo], [8, 4, 1, 3])
    assert.deepEqual(await admin('SELECT count(*)::int AS c FROM counters WHERE n > 0', [], dbname), [{ c: 4 }], 'a dry run ran tasks')

    const bad = await pgcrew(['run', trial, '--url', url, '--limit', 'five'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /^pgcrew run: --limit takes a whole number from 0 to \d+, not "five"$/m)
  })
})

describe("pgcrew run with nothing configured: pgcrew's own PostgreSQL, kept under the project", () => {
  const cli = new URL('../../src/cli.ts', import.meta.url).pathname
  const demo = new URL('../../examples/demo-pipeline.ts', import.meta.url).pathname
  const tsx = import.meta.resolve('tsx')
  // Enough that the first run is still going when its first progress line (every 2 s) shows up to be
  // interrupted: 3,000 were done in 1.7 s on a fast day here (1,800 tasks/s), and the test failed.
  const DEMO_TASKS = 10_000

  /** `npm start` as a new user runs it: an empty environment but PATH and HOME, in a project of its own. */
  function start(cwd: string, extra: string[] = [], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
    const env = { PATH: process.env.PATH, HOME: '/nonexistent', PGCREW_DEMO_TASKS: String(DEMO_TASKS) }
    const child = spawn(process.execPath, ['--import', tsx, cli, 'run', demo, '--threads', '2', ...extra], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    atEnd(() => child.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      onStderr?.(stderr, child)
    })
    return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })))
  }
  const tasks = (r: Run): number[] => {
    const m = /^tasks +(\d+) seen, (\d+) done, (\d+) skipped/m.exec(r.stdout)
    assert.ok(m, r.stdout + r.stderr)
    return m.slice(1).map(Number)
  }

  test('regression: a second run skips every task (the data was thrown away); Ctrl-C says the truth and the rerun resumes; --fresh starts clean', async () => {
    const project = scratchDir()
    chmodSync(project, 0o755) // as root, the server runs as postgres and must reach .pgcrew/data
    writeFileSync(join(project, 'package.json'), '{ "name": "someone-elses-project" }\n')
    mkdirSync(join(project, 'sub'))
    const dataDir = join(project, '.pgcrew', 'data')
    atEnd(() => {
      try {
        process.kill(Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGQUIT')
      } catch {
        // no server left: as it should be
      }
    })

    let interrupted = false
    const first = await start(project, [], (text, child) => {
      if (!interrupted && /^\S+Z progress: \d+\/\d+ done=[1-9]/m.test(text)) {
        interrupted = true
        child.kill('SIGINT')
      }
    })
    assert.equal(first.code, 1, first.stderr)
    assert.match(
      first.stderr,
      /^pgcrew: nothing configured \(no profile, no PG\* variable\): using pgcrew's own PostgreSQL \(\w+ binaries\) at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres, data in \.pgcrew\/data \(start clean with --fresh, or remove it: rm -rf \.pgcrew\/data\)$/m,
    )
    assert.match(first.stdout, /^pipeline +demo-magnitudes \(cancelled: run again to resume; the data is kept in \.pgcrew\/data\)$/m)
    assert.match(first.stderr, /^pgcrew: stopped pgcrew's own PostgreSQL; its data stays in \.pgcrew\/data for the next run$/m)
    assert.equal(existsSync(join(dataDir, 'PG_VERSION')), true)

    const second = await start(project)
    assert.equal(second.code, 0, second.stderr)
    const [seen, done, skipped] = tasks(second)
    assert.equal(seen, DEMO_TASKS)
    assert.ok(skipped > 0 && done + skipped === DEMO_TASKS, second.stdout)

    // From a subdirectory the project is the same: every task is done already.
    const third = await start(join(project, 'sub'))
    assert.equal(third.code, 0, third.stderr)
    assert.deepEqual(tasks(third), [DEMO_TASKS, 0, DEMO_TASKS])
    assert.match(third.stderr, new RegExp(`data in ${dataDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`))

    const fresh = await start(project, ['--fresh'])
    assert.equal(fresh.code, 0, fresh.stderr)
    assert.deepEqual(tasks(fresh), [DEMO_TASKS, DEMO_TASKS, 0])
    assert.match(fresh.stderr, /data in \.pgcrew\/data, started clean/)
    assert.equal(existsSync(join(dataDir, 'postmaster.pid')), false, 'the server still runs after pgcrew run ended')
  })

  test('--fresh with a configured server is bad usage: it would not touch that server', async () => {
    const r = await pgcrew(['run', demo, '--fresh'], cleanEnv({ PGHOST: '127.0.0.1' }))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /^pgcrew run: --fresh starts pgcrew's own PostgreSQL clean; this run is configured/m)
  })
})

describe('pgcrew run: a ledger the role may not write', () => {
  const trial = new URL('../fixtures/pipelines/trial.ts', import.meta.url).pathname
  test('LEDGER_NOT_WRITABLE in the CLI\'s words: --as admin named once (it read "--as admin, or --as admin"), no stack', async () => {
    const { dbname, url } = await freshDatabase('clinowrite')
    const role = await freshRole('clinowrite')
    secrets.add(server().password)
    secrets.add(role.password)
    const env = cleanEnv({ PGCREW_PROFILES: join(scratchDir(), 'none.ini') })
    const first = await pgcrew(['run', trial, '--url', url, '--limit', '1', '--json'], env)
    assert.equal(JSON.parse(first.stdout).seen, 1, first.stderr)
    await admin(`GRANT CREATE ON SCHEMA public TO "${role.name}"; GRANT ALL ON counters TO "${role.name}"`, [], dbname)
    const { host, port } = server()
    const r = await pgcrew(['run', trial, '--url', `postgres://${role.name}:${role.password}@${host}:${port}/${dbname}`, '--threads', '1'], env)
    assert.equal(r.code, 1, r.stdout)
    assert.match(
      r.stderr,
      /^pgcrew: the ledger table "pgcrew_ledger" cannot be written by role "[^"]+": it lacks SELECT, INSERT, UPDATE on it\. Ways out: run as a role that may write it \(--as admin\); /m,
    )
    assert.equal(r.stderr.match(/--as admin/g)?.length, 1, r.stderr)
    noStack(r.stderr)
  })
})

describe('pgcrew run: the connection budget', () => {
  const counter = new URL('../fixtures/pipelines/counter.ts', import.meta.url).pathname
  const runEnv = async (): Promise<{ env: NodeJS.ProcessEnv; dbname: string }> => {
    const { dbname } = await freshDatabase('clirun')
    const { host, port, user, password } = server()
    secrets.add(password)
    return { dbname, env: cleanEnv({ PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGDATABASE: dbname }) }
  }

  test('regression: --budget 4 shows the whole sum, main pool and run history included ("clamped to 1 threads × 1 = 3" left out the 2)', async () => {
    const { env } = await runEnv()
    const r = await pgcrew(['run', counter, '--threads', '2', '--budget', '4'], env)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^budget +budget 4 \(explicit\); wanted 2 \(main\) \+ 1 \(run history\) \+ 2 threads × 1 = 5 — clamped to 2 \(main\) \+ 1 \(run history\) \+ 1 thread × 1 = 4$/m)
    assert.match(r.stdout, /^threads +1, 4 connections at most$/m)
  })

  test('--json carries the budget as numbers too', async () => {
    const { env } = await runEnv()
    const r = await pgcrew(['run', counter, '--threads', '2', '--budget', '4', '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const summary = JSON.parse(r.stdout)
    assert.deepEqual(summary.budgetPlan, { budget: 4, source: 'explicit', main: 2, beside: 1, threads: 1, perWorker: 1, total: 4, clamped: true })
    assert.equal(summary.budget, 4)
    assert.match(summary.budgetExplanation, /clamped to 2 \(main\) \+ 1 \(run history\) \+ 1 thread × 1 = 4$/)
  })

  test('--per-worker N runs N tasks at once in each thread, inside the budget', async () => {
    const { env, dbname } = await runEnv()
    const r = await pgcrew(['run', counter, '--threads', '2', '--per-worker', '3', '--json'], env)
    assert.equal(r.code, 0, r.stderr)
    const summary = JSON.parse(r.stdout)
    assert.deepEqual([summary.budgetPlan.threads, summary.budgetPlan.perWorker, summary.budgetPlan.total, summary.done, summary.failed], [2, 3, 9, 200, 0])
    assert.deepEqual(await admin('SELECT n, count(*)::int AS c FROM counters GROUP BY n', [], dbname), [{ n: 1, c: 200 }])
    const bad = await pgcrew(['run', counter, '--per-worker', '0'], env)
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /^pgcrew run: --per-worker takes a whole number from 1 to 1000, not "0"$/m)
  })

  test('a budget that cannot fit is refused with advice naming only flags pgcrew run has', async () => {
    const { env } = await runEnv()
    const help = (await pgcrew(['run', '--help'])).stdout
    for (const [argv, advice] of [[['--budget', '3'], /; not even one worker connection is left; raise --budget to at least 4$/]] as const) {
      const r = await pgcrew(['run', counter, '--threads', '2', ...argv], env)
      assert.equal(r.code, 1, r.stdout)
      const line = r.stderr.trim()
      assert.match(line, /^pgcrew: budget 3 \(explicit\); wanted 2 \(main\) \+ 1 \(run history\) \+ 2 threads × \d = \d — over budget/)
      assert.match(line, advice)
      for (const flag of line.match(/--[a-z-]+/g) ?? []) assert.match(help, new RegExp(`^  ${flag} `, 'm'), `the advice names ${flag}, which pgcrew run does not have`)
      noStack(r.stderr)
    }
  })
})

describe('pgcrew tmp', () => {
  test('starts a cluster, prints a pgpass-based environment that connects, and removes it all when aborted', async () => {
    const controller = new AbortController()
    const out = collector()
    let printed: () => void
    const ready = new Promise<void>((resolve) => (printed = resolve))
    const origWrite = out.stream.write.bind(out.stream)
    out.stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      const ok = (origWrite as (...a: unknown[]) => boolean)(chunk, ...rest)
      if (String(chunk).startsWith('export ')) printed()
      return ok
    }) as typeof out.stream.write
    const running = pgcrew(['tmp'], cleanEnv(), controller.signal, out)
    await Promise.race([ready, running.then((r) => assert.fail(`tmp ended early: ${r.stderr}`))])

    const exportLine = out
      .text()
      .split('\n')
      .find((l) => l.startsWith('export '))!
    const vars = Object.fromEntries(
      exportLine
        .slice('export '.length)
        .split(' ')
        .map((kv) => kv.split('=') as [string, string]),
    )
    assert.deepEqual(Object.keys(vars), ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSFILE'])
    assert.equal(vars.PGDATABASE, 'postgres')
    assert.match(out.text(), /^# PostgreSQL \d+.* is running at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/m)
    assert.equal(statSync(vars.PGPASSFILE!).mode & 0o777, 0o600)
    const password = readFileSync(vars.PGPASSFILE!, 'utf8').split('\n')[0]!.split(':').at(-1)!
    assert.ok(password.length >= 16)
    assert.ok(!out.text().includes(password), 'the superuser password is not printed')

    // What the printout says is enough to connect: only the PG* variables, no password anywhere else.
    {
      await using db = new Database({ env: cleanEnv(vars) })
      const { rows } = await db.query('SELECT current_user AS u, inet_server_port() AS port')
      assert.deepEqual(rows[0], { u: 'postgres', port: Number(vars.PGPORT) })
    }
    const dataDir = join(vars.PGPASSFILE!, '..')
    assert.ok(existsSync(dataDir))

    controller.abort()
    const r = await running
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, `# stopped PostgreSQL and removed ${dataDir}\n`)
    assert.equal(existsSync(dataDir), false)
  })
})

describe('the pgcrew executable', () => {
  test('exit codes of the real process: 0 for --help, 2 for bad usage, 1 for an explained failure', async () => {
    const help = await spawnPgcrew(['check', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /^Usage: pgcrew check/)
    const bad = await spawnPgcrew(['frobnicate'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /unknown command "frobnicate"/)
    const failed = await spawnPgcrew(['check', '--url', `postgres://x:${server().password}@127.0.0.1:1/db`, '--json'])
    assert.equal(failed.code, 1)
    assert.equal(JSON.parse(failed.stdout).error.code, 'CONNECTION_REFUSED')
    noStack(failed.stderr)
  })

  test('pgcrew tmp --json stops the server and removes its directory on SIGINT, exiting 0', async () => {
    let doc: { dataDir: string; url: string; pgpassFile: string; port: number } | undefined
    const r = await spawnPgcrew(['tmp', '--json'], cleanEnv(), (text, child) => {
      if (!doc && text.endsWith('\n')) {
        doc = JSON.parse(text)
        child.kill('SIGINT')
      }
    })
    assert.ok(doc, r.stderr)
    assert.equal(r.code, 0, r.stderr)
    assert.match(doc.url, /^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres$/)
    assert.equal(doc.pgpassFile, join(doc.dataDir, 'pgpass'))
    assert.equal(existsSync(doc.dataDir), false)
  })
})
