#!/usr/bin/env node
// One-shot: moves src/ into subsystem folders and test/ into subject folders (issue 12), with
// `git mv` so history follows, and rewrites every path that names a moved file. Run it on a clean
// tree; it stages the result for one commit with no behaviour change. Done by a table, not by hand,
// so it can run again on a main that other branches have changed since it was written:
//   node scripts/restructure.mjs --dry-run   what it would do, and what it refuses
//   node scripts/restructure.mjs             do it (refuses on a dirty tree or on unknown files)
// A src or test file missing from the tables, or a test in a split file missing from SPLITS, stops
// it before it touches anything: add the file or test title to the table and run it again.
// Once the tree is restructured it says so and exits 0 without changing anything.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, posix } from 'node:path'
import ts from 'typescript'

/** Every file of src/: where it goes. src/index.ts (the barrel) and src/cli.ts (the bin) stay. */
const SRC = {
  'src/errors.ts': 'src/errors/pgcrew-error.ts',
  'src/database-error.ts': 'src/errors/database-error.ts',
  'src/sqlstate.ts': 'src/errors/sqlstate.ts',
  'src/closest.ts': 'src/errors/did-you-mean.ts',
  'src/show-value.ts': 'src/errors/show-value.ts',

  'src/options.ts': 'src/connect/connect-options.ts',
  'src/connection-params.ts': 'src/connect/connection-params.ts',
  'src/connection-string.ts': 'src/connect/connection-string.ts',
  'src/connect-errors.ts': 'src/connect/connect-errors.ts',
  'src/pg-client.ts': 'src/connect/connect-client.ts',
  'src/target.ts': 'src/connect/connect-target.ts',
  'src/profiles.ts': 'src/connect/profiles.ts',
  'src/pgpass.ts': 'src/connect/pgpass.ts',
  'src/integer-setting.ts': 'src/connect/integer-setting.ts',

  'src/connection-target.ts': 'src/toolkit/toolkit-target.ts',
  'src/quote.ts': 'src/toolkit/quote.ts',
  'src/settings.ts': 'src/toolkit/settings.ts',
  'src/prepared.ts': 'src/toolkit/prepared.ts',
  'src/cursor.ts': 'src/toolkit/cursor.ts',
  'src/listen.ts': 'src/toolkit/listen.ts',
  'src/advisory-lock.ts': 'src/toolkit/advisory-lock.ts',
  'src/copy.ts': 'src/toolkit/copy.ts',
  'src/copy-transfer.ts': 'src/toolkit/copy-transfer.ts',
  'src/table-name.ts': 'src/toolkit/table-name.ts',

  'src/database.ts': 'src/database/database.ts',
  'src/executor.ts': 'src/database/database-executor.ts',
  'src/transaction.ts': 'src/database/transaction.ts',
  'src/snapshot.ts': 'src/database/database-snapshot.ts',
  'src/realm.ts': 'src/database/database-realm.ts',
  'src/hooks.ts': 'src/database/on-connect-hooks.ts',
  'src/backoff.ts': 'src/database/retry-backoff.ts',
  'src/retry.ts': 'src/database/connection-retry.ts',
  'src/begin-with.ts': 'src/database/begin-with.ts',

  'src/crew.ts': 'src/crew/crew.ts',
  'src/crew-protocol.ts': 'src/crew/crew-protocol.ts',
  'src/crew-runtime.ts': 'src/crew/crew-runtime.ts',
  'src/define-worker.ts': 'src/crew/define-worker.ts',
  'src/budget.ts': 'src/crew/crew-budget.ts',

  'src/pipeline.ts': 'src/pipeline/pipeline.ts',
  'src/ledger.ts': 'src/pipeline/pipeline-ledger.ts',
  'src/progress.ts': 'src/pipeline/pipeline-progress.ts',
  'src/task-batcher.ts': 'src/pipeline/task-batcher.ts',

  'src/migrate.ts': 'src/schema/migrate.ts',
  'src/migrate-plan.ts': 'src/schema/migrate-plan.ts',
  'src/migrate-script.ts': 'src/schema/migrate-script.ts',
  'src/migrate-scripts.ts': 'src/schema/migrate-scripts.ts',
  'src/migrate-seed.ts': 'src/schema/migrate-seed.ts',
  'src/migrate-template.ts': 'src/schema/migrate-template.ts',
  'src/migrate-version-table.ts': 'src/schema/migrate-version-table.ts',
  'src/migrate-versions.ts': 'src/schema/migrate-versions.ts',
  'src/split-statements.ts': 'src/schema/split-statements.ts',
  'src/migrate-format-template.ts': 'src/schema/migrate-format-template.ts',
  'src/migrate-run.ts': 'src/schema/migrate-run.ts',
  'src/migrate-session.ts': 'src/schema/migrate-session.ts',

  'src/temp-cluster.ts': 'src/cluster/temp-cluster.ts',
  'src/postgres-binaries.ts': 'src/cluster/postgres-binaries.ts',
  'src/cluster-data-dir.ts': 'src/cluster/cluster-data-dir.ts',
  'src/embedded-default.ts': 'src/cluster/embedded-default.ts',

  'src/cli/main.ts': 'src/cli/cli-main.ts',
  'src/cli/command.ts': 'src/cli/cli-command.ts',
  'src/cli/commands.ts': 'src/cli/cli-commands.ts',
  'src/cli/output.ts': 'src/cli/cli-output.ts',
  'src/cli/connect-as.ts': 'src/cli/cli-connect-as.ts',
  'src/cli/check.ts': 'src/cli/check-command.ts',
  'src/cli/initdb.ts': 'src/cli/initdb-command.ts',
  'src/cli/profiles.ts': 'src/cli/profiles-command.ts',
  'src/cli/run.ts': 'src/cli/run-command.ts',
  'src/cli/tmp.ts': 'src/cli/tmp-command.ts',
}
const SRC_STAYS = new Set(['src/index.ts', 'src/cli.ts'])

/** Every test file of test/ (top level): where it goes. Non-test files (helpers.ts, fixtures/) stay. */
const TESTS = {
  'test/build.test.ts': 'test/package/build.test.ts',
  'test/exports.test.ts': 'test/package/exports.test.ts',
  'test/cli.test.ts': 'test/cli/cli.test.ts',
  'test/connection-string.test.ts': 'test/connect/connection-string.test.ts',
  'test/options-validation.test.ts': 'test/connect/connect-options.test.ts',
  'test/pgpass.test.ts': 'test/connect/pgpass.test.ts',
  'test/profiles.test.ts': 'test/connect/profiles.test.ts',
  'test/database-error.test.ts': 'test/errors/database-error.test.ts',
  'test/sqlstate.test.ts': 'test/errors/sqlstate.test.ts',
  'test/database.test.ts': 'test/database/database.test.ts',
  'test/advisory-lock.test.ts': 'test/toolkit/advisory-lock.test.ts',
  'test/copy.test.ts': 'test/toolkit/copy.test.ts',
  'test/cursor.test.ts': 'test/toolkit/cursor.test.ts',
  'test/database-toolkit.test.ts': 'test/toolkit/database-toolkit.test.ts',
  'test/listen.test.ts': 'test/toolkit/listen.test.ts',
  'test/prepared.test.ts': 'test/toolkit/prepared.test.ts',
  'test/quote.test.ts': 'test/toolkit/quote.test.ts',
  'test/settings.test.ts': 'test/toolkit/settings.test.ts',
  'test/pipeline-regressions.test.ts': 'test/pipeline/pipeline.test.ts',
  'test/migrate-plan.test.ts': 'test/schema/migrate-plan.test.ts',
  'test/migrate.test.ts': 'test/schema/migrate.test.ts',
  'test/split-statements.test.ts': 'test/schema/split-statements.test.ts',
  'test/temp-cluster.test.ts': 'test/cluster/temp-cluster.test.ts',
  'test/budget.test.ts': 'test/crew/crew-budget.test.ts',
  'test/ledger.test.ts': 'test/pipeline/pipeline-ledger.test.ts',
  'test/pipeline-batch.test.ts': 'test/pipeline/pipeline-batch.test.ts',
  'test/pipeline-faults.test.ts': 'test/pipeline/pipeline-faults.test.ts',
  'test/progress.test.ts': 'test/pipeline/pipeline-progress.test.ts',
}

/**
 * Test files split by subject, test by test. A test goes where `tests` names it (by its title as
 * written, template literals too), else where `describes` names its describe(), else to `default`.
 * A file without a default refuses any test it does not name: that is a new test to place by hand.
 * The destination that gets the most tests takes the file over with `git mv` (history follows it).
 */
const SPLITS = {
  'test/crew.test.ts': {
    default: 'test/crew/crew.test.ts',
    describes: { pipelines: 'test/pipeline/pipeline-run.test.ts', 'pgcrew run': 'test/pipeline/pipeline-run.test.ts' },
  },
  'test/lifecycle-regressions.test.ts': {
    describes: {
      'transactions and async context': 'test/database/transaction-concurrency.test.ts',
      'closing and switching': 'test/database/database-lifecycle.test.ts',
      snapshots: 'test/database/database-lifecycle.test.ts',
      'stuck servers, queued work and concurrent switches': 'test/database/database-lifecycle.test.ts',
      'failing onConnect hooks': 'test/database/database-lifecycle.test.ts',
      memory: 'test/database/database-lifecycle.test.ts',
    },
    tests: {
      'a crew made before connect() reaches the profile the master chose (PGCREW_PROFILE in a custom env)': 'test/crew/crew-lifecycle.test.ts',
      'close() after a worker crashed does not wait for the dead worker': 'test/crew/crew-lifecycle.test.ts',
      'the realm registry does not grow with every query on a tracked pool': 'test/database/database-lifecycle.test.ts',
      'the realm registry forgets a closed Database (regression: one entry per Database ever made)': 'test/database/database-lifecycle.test.ts',
      'a timed advisory lock that fails half-way inside a transaction leaves no session lock on a pooled connection': 'test/toolkit/advisory-lock.test.ts',
      'a listener made with listen(db) ends when the Database is closed, instead of retrying forever': 'test/toolkit/listen.test.ts',
    },
  },
  'test/toolkit-regressions.test.ts': {
    describes: { listeners: 'test/toolkit/listen.test.ts' },
    tests: {
      'withSettings and a timed advisory lock inside a transaction leave no SET LOCAL value on the pooled connection': 'test/toolkit/settings.test.ts',
      'withSettings accepts a custom setting the session has never set (app.tenant)': 'test/toolkit/settings.test.ts',
      'two overlapping acquire() calls on one lock take one connection and one server lock': 'test/toolkit/advisory-lock.test.ts',
    },
  },
}

/** Folders whose code is read for paths to rewrite; this script itself names the old paths on purpose. */
const CODE_ROOTS = ['src', 'test', 'workers', 'bench', 'examples', 'scripts']
const CODE_EXT = /\.(ts|mts|cts|js|mjs|cjs)$/
const TEXT_FILES = /(\.(md|json|cjs|mjs|ts|yml|yaml)$|^\.ci\/run$)/
const SELF = 'scripts/restructure.mjs'
const DEPCRUISE = '.dependency-cruiser.cjs'

const args = new Set(process.argv.slice(2))
const dryRun = args.has('--dry-run')
const git = (...a) => execFileSync('git', a, { encoding: 'utf8' })

if (!existsSync('package.json') || JSON.parse(readFileSync('package.json', 'utf8')).name !== 'pgcrew') fail(['run this from the root of the pgcrew repository'])
const tracked = git('ls-files', '-z').split('\0').filter(Boolean)
const trackedSet = new Set(tracked)

// Already done? Every destination exists and no source does: nothing to do.
const srcSources = Object.keys(SRC)
if (srcSources.every((f) => !trackedSet.has(f)) && Object.values(SRC).every((f) => trackedSet.has(f))) {
  console.log('restructure: src/ is already in subsystem folders; nothing to do')
  process.exit(0)
}

// ---- refuse before touching anything ------------------------------------------------------------
const problems = []
const srcNow = tracked.filter((f) => f.startsWith('src/') && f.endsWith('.ts'))
for (const f of srcNow) if (!(f in SRC) && !SRC_STAYS.has(f)) problems.push(`${f}: not in the SRC table of ${SELF}; add where it goes`)
for (const f of srcSources) if (!trackedSet.has(f)) problems.push(`${f}: in the SRC table but not in the tree (renamed or removed?); fix the table`)
const testsNow = tracked.filter((f) => /^test\/[^/]+\.test\.ts$/.test(f))
for (const f of testsNow) if (!(f in TESTS) && !(f in SPLITS)) problems.push(`${f}: not in the TESTS or SPLITS table of ${SELF}; add where it goes`)
for (const f of Object.keys(TESTS)) if (!trackedSet.has(f)) problems.push(`${f}: in the TESTS table but not in the tree; fix the table`)
const destinations = [...Object.values(SRC), ...Object.values(TESTS)]
for (const d of destinations) if (trackedSet.has(d)) problems.push(`${d}: a destination that already exists`)
if (!dryRun && git('status', '--porcelain').trim() !== '') problems.push('the work tree has uncommitted changes: commit or stash them first (so a failed run is undone with git checkout/reset)')

const splitPlans = {}
for (const [file, spec] of Object.entries(SPLITS)) {
  if (!trackedSet.has(file)) {
    problems.push(`${file}: in the SPLITS table but not in the tree; fix the table`)
    continue
  }
  splitPlans[file] = planSplit(file, readFileSync(file, 'utf8'), spec, problems)
}
if (problems.length) fail(problems)

// ---- the full move table ------------------------------------------------------------------------
/** old path → new path, for files that move whole. */
const moves = new Map([...Object.entries(SRC), ...Object.entries(TESTS).filter(([f]) => trackedSet.has(f))])
/** A split file, named in text (a comment, a README line), is named by its main destination. */
const textMoves = new Map(moves)
for (const [file, plan] of Object.entries(splitPlans)) textMoves.set(file, plan.main)

const oldTree = new Set()
for (const f of tracked) {
  oldTree.add(f)
  for (let d = posix.dirname(f); d !== '.'; d = posix.dirname(d)) oldTree.add(d)
}
oldTree.add('.')

/** Where an old repo path is after the move (directories stay where they are). */
const movedPath = (p) => moves.get(p) ?? p

const codeFiles = tracked.filter((f) => CODE_ROOTS.some((r) => f.startsWith(`${r}/`)) && CODE_EXT.test(f) && f !== SELF && !(f in SPLITS))
const textFiles = tracked.filter((f) => TEXT_FILES.test(f) && f !== SELF && f !== 'package-lock.json' && !(f in SPLITS))

/** new path → new content */
const out = new Map()
for (const f of codeFiles) out.set(movedPath(f), rewritePaths(readFileSync(f, 'utf8'), f, movedPath(f)))
for (const f of textFiles) {
  const at = movedPath(f)
  out.set(at, rewriteRepoPaths(out.get(at) ?? readFileSync(f, 'utf8')))
}
// The split parts join their destinations after those have their own paths rewritten.
const created = []
for (const [file, plan] of Object.entries(splitPlans)) {
  for (const [dest, part] of plan.parts) {
    const text = rewriteRepoPaths(rewritePaths(part, file, dest))
    const existing = out.get(dest)
    if (existing === undefined) {
      out.set(dest, text)
      if (dest !== plan.primary) created.push(dest)
    } else out.set(dest, mergeInto(existing, text, dest, problems))
  }
}
if (problems.length) fail(problems)

// The rule that every src file sits in a subsystem folder can only hold once they do.
if (out.has(DEPCRUISE) || trackedSet.has(DEPCRUISE)) {
  const text = out.get(DEPCRUISE) ?? readFileSync(DEPCRUISE, 'utf8')
  out.set(DEPCRUISE, text.replace(/severity: 'ignore', \/\/ restructure\.mjs: error/, "severity: 'error',"))
}

const changed = [...out].filter(([at, text]) => {
  const from = [...moves].find(([, to]) => to === at)?.[0] ?? [...Object.entries(splitPlans)].find(([, p]) => p.primary === at)?.[0] ?? at
  return !trackedSet.has(from) || at !== from || readFileSync(from, 'utf8') !== text
})

if (dryRun) {
  for (const [from, to] of moves) console.log(`move   ${from} → ${to}`)
  for (const [file, plan] of Object.entries(splitPlans)) {
    console.log(`split  ${file} → ${[...plan.parts.keys()].join(', ')} (${plan.primary ? `git mv to ${plan.primary}` : 'then git rm'})`)
    for (const [title, dest] of plan.placed) console.log(`         ${dest} ⇐ ${title}`)
  }
  for (const [at] of changed) console.log(`edit   ${at}`)
  process.exit(0)
}

// ---- do it --------------------------------------------------------------------------------------
for (const [from, to] of [
  ...moves,
  ...Object.entries(splitPlans)
    .filter(([, p]) => p.primary)
    .map(([f, p]) => [f, p.primary]),
]) {
  mkdirSync(dirname(to), { recursive: true })
  git('mv', from, to)
}
for (const [file, plan] of Object.entries(splitPlans)) if (!plan.primary) git('rm', '-q', file)
for (const [at, text] of changed) {
  mkdirSync(dirname(at), { recursive: true })
  writeFileSync(at, text)
}
git('add', '--', ...changed.map(([at]) => at))
console.log(
  `restructure: moved ${moves.size + Object.keys(splitPlans).length} files, split ${Object.keys(splitPlans).length} test files (${created.length} new), rewrote paths in ${changed.length} files; all staged.`,
)
console.log('next: npx tsc --noEmit -p . && npm run lint:deps && npm test, then commit (no behaviour change in this commit)')

// ---- helpers ------------------------------------------------------------------------------------

function fail(lines) {
  console.error(`restructure: refused, nothing was changed:\n${lines.map((l) => `  - ${l}`).join('\n')}`)
  process.exit(1)
}

function parse(file, text) {
  const kind = /\.(m|c)?js$/.test(file) ? ts.ScriptKind.JS : ts.ScriptKind.TS
  return ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind)
}

/** `spec` (relative to `fromFile`, in the old tree) as written from `toFile` in the new tree; undefined when it names nothing known. */
function respecify(spec, fromFile, toFile) {
  const trail = spec.endsWith('/') && spec.length > 1
  const bare = trail ? spec.slice(0, -1) : spec
  let target = posix.normalize(posix.join(posix.dirname(fromFile), bare))
  let rest = ''
  if (!oldTree.has(target)) {
    // A prefix (`../workers/crew-worker${ext}`): the folder must exist; the name's start is kept.
    const dir = posix.dirname(target)
    if (trail || !oldTree.has(dir)) return undefined
    rest = `/${posix.basename(target)}`
    target = dir
  }
  let rel = posix.relative(posix.dirname(toFile), movedPath(target)) || '.'
  if (!rel.startsWith('.')) rel = `./${rel}`
  return rel + rest + (trail ? '/' : '')
}

function isRelative(s) {
  return s === '.' || s === '..' || s.startsWith('./') || s.startsWith('../')
}

/**
 * Rewrites the paths a file names relative to itself: import/export specifiers, import() and
 * import('…') types, `new URL(x, import.meta.url)` (a string, or the start of a template or of a
 * `+` concatenation), and `join(import.meta.dirname, 'x', …)`.
 */
function rewritePaths(text, fromFile, toFile) {
  const sf = parse(fromFile, text)
  const edits = []
  const edit = (start, end, spec, relaxed = false) => {
    if (!isRelative(spec) && !relaxed) return
    const next = respecify(isRelative(spec) ? spec : `./${spec}`, fromFile, toFile)
    if (next === undefined) return
    const written = !isRelative(spec) && next.startsWith('./') ? next.slice(2) : next
    if (written !== spec) edits.push({ start, end, text: written })
  }
  const literal = (node, relaxed = false) => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) edit(node.getStart(sf) + 1, node.end - 1, node.text, relaxed)
    else if (ts.isTemplateExpression(node)) edit(node.head.getStart(sf) + 1, node.head.end - 2, node.head.text)
    else if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) literal(node.left)
  }
  const isMetaUrl = (n) => n && n.getText(sf) === 'import.meta.url'
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) literal(node.moduleSpecifier)
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) literal(node.arguments[0])
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal(node.argument.literal)
    else if (ts.isNewExpression(node) && node.expression.getText(sf) === 'URL' && node.arguments?.length === 2 && isMetaUrl(node.arguments[1])) literal(node.arguments[0])
    else if (ts.isCallExpression(node) && node.arguments.length >= 2 && node.arguments[0].getText(sf) === 'import.meta.dirname') literal(node.arguments[1], true)
    ts.forEachChild(node, visit)
  }
  visit(sf)
  edits.sort((a, b) => b.start - a.start)
  for (const e of edits) text = text.slice(0, e.start) + e.text + text.slice(e.end)
  return text
}

/** Repo-root paths in prose, messages and configs (`src/options.ts`, `test/crew.test.ts`). */
function rewriteRepoPaths(text) {
  return text.replace(/(?<![\w./-])((?:src|test)\/[\w./-]*\w)/g, (m) => textMoves.get(m) ?? m)
}

/** The title of the first test()/it()/describe() call in `node`, as written (quotes dropped). */
function firstTitle(node, sf, kinds = ['test', 'it']) {
  let found
  const visit = (n) => {
    if (found) return
    if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && kinds.includes(n.expression.text) && n.arguments[0]) {
      found = n.arguments[0].getText(sf).slice(1, -1)
      return
    }
    ts.forEachChild(n, visit)
  }
  visit(node)
  return found
}

function callName(st) {
  return ts.isExpressionStatement(st) && ts.isCallExpression(st.expression) && ts.isIdentifier(st.expression.expression) ? st.expression.expression.text : undefined
}

function bodyOf(call) {
  const fn = call.arguments[call.arguments.length - 1]
  return fn && (ts.isArrowFunction(fn) || ts.isFunctionExpression(fn)) && ts.isBlock(fn.body) ? fn.body : undefined
}

/**
 * Cuts a test file into one text per destination: each gets the file's imports and top-level
 * helpers (unused ones pruned), and its tests inside copies of their describe() blocks.
 */
function planSplit(file, text, spec, problems) {
  const sf = parse(file, text)
  const imports = []
  const pieces = [] // { kind: 'helper', text } | { kind: 'unit', dest, text } | { kind: 'describe', head, tail, locals, units }
  const placed = []
  const destFor = (title, describe) => spec.tests?.[title] ?? (describe !== undefined ? spec.describes?.[describe] : undefined) ?? spec.default
  const place = (st, describe) => {
    const title = firstTitle(st, sf) ?? firstTitle(st, sf, ['describe'])
    const dest = destFor(title, describe)
    if (!dest) problems.push(`${file}: no destination for the test "${title}"${describe !== undefined ? ` (in describe "${describe}")` : ''}; add it to SPLITS in ${SELF}`)
    else placed.push([title, dest])
    return dest
  }
  for (const st of sf.statements) {
    const name = callName(st)
    if (ts.isImportDeclaration(st)) imports.push(st.getText(sf))
    else if (name === 'describe' && bodyOf(st.expression)) {
      const call = st.expression
      const body = bodyOf(call)
      const describe = call.arguments[0].getText(sf).slice(1, -1)
      const d = { kind: 'describe', head: text.slice(st.getFullStart(), body.getStart(sf) + 1), tail: `\n${text.slice(body.end - 1, st.end)}`, locals: [], units: [] }
      for (const inner of body.statements) {
        if (firstTitle(inner, sf) !== undefined || callName(inner) === 'describe') d.units.push({ dest: place(inner, describe), text: inner.getFullText(sf) })
        else d.locals.push(inner.getFullText(sf))
      }
      pieces.push(d)
    } else if (firstTitle(st, sf) !== undefined) pieces.push({ kind: 'unit', dest: place(st, undefined), text: st.getFullText(sf) })
    else pieces.push({ kind: 'helper', text: st.getFullText(sf) })
  }
  for (const title of Object.keys(spec.tests ?? {}))
    if (!placed.some(([t]) => t === title)) console.warn(`restructure: warning: ${file} has no test "${title}" (renamed or removed?); its SPLITS entry does nothing`)
  const dests = [...new Set(placed.map(([, d]) => d))]
  const parts = new Map()
  for (const dest of dests) {
    let body = ''
    for (const p of pieces) {
      if (p.kind === 'helper') body += p.text
      else if (p.kind === 'unit' && p.dest === dest) body += p.text
      else if (p.kind === 'describe' && p.units.some((u) => u.dest === dest))
        body +=
          p.head +
          p.locals.join('') +
          p.units
            .filter((u) => u.dest === dest)
            .map((u) => u.text)
            .join('') +
          p.tail
    }
    parts.set(dest, prune(file, `${imports.join('\n')}\n${body.replace(/^\n+/, '\n')}\n`))
  }
  const count = (d) => placed.filter(([, x]) => x === d).length
  const byCount = dests.slice().sort((a, b) => count(b) - count(a))
  // The file itself moves to its biggest new destination; when every destination is an existing
  // file, it is removed instead (its tests are appended there).
  const taken = new Set([...trackedSet, ...Object.values(SRC), ...Object.values(TESTS)])
  const primary = byCount.find((d) => !taken.has(d))
  return { parts, primary, main: primary ?? byCount[0], placed }
}

/** The names a statement declares (const/let/function/class/type/interface/enum). */
function declaredNames(st) {
  if (ts.isVariableStatement(st)) {
    const names = []
    const bind = (n) => {
      if (ts.isIdentifier(n)) names.push(n.text)
      else for (const el of n.elements) if (!ts.isOmittedExpression(el)) bind(el.name)
    }
    for (const d of st.declarationList.declarations) bind(d.name)
    return names
  }
  if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isTypeAliasDeclaration(st) || ts.isInterfaceDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) return [st.name.text]
  return []
}

/** Identifier texts used in `sf` outside the range [start, end). */
function usedOutside(sf, start, end) {
  const used = new Set()
  const visit = (n) => {
    if (n.pos >= start && n.end <= end) return
    if (ts.isIdentifier(n)) used.add(n.text)
    ts.forEachChild(n, visit)
  }
  visit(sf)
  return used
}

/** Drops declarations nobody uses (top level and inside describe blocks), then unused imports. */
function prune(file, text) {
  for (;;) {
    const sf = parse(file, text)
    const blocks = [sf.statements, ...sf.statements.filter((st) => callName(st) === 'describe' && bodyOf(st.expression)).map((st) => bodyOf(st.expression).statements)]
    let cut
    for (const list of blocks) {
      for (const st of list) {
        const names = declaredNames(st)
        if (names.length && !names.some((n) => usedOutside(sf, st.pos, st.end).has(n))) cut = st
        if (cut) break
      }
      if (cut) break
    }
    if (!cut) break
    text = text.slice(0, cut.getFullStart()) + text.slice(cut.end)
  }
  const sf = parse(file, text)
  const firstCode = sf.statements.find((st) => !ts.isImportDeclaration(st))
  const used = usedOutside(sf, 0, firstCode ? firstCode.getFullStart() : text.length)
  const kept = []
  for (const st of sf.statements.filter(ts.isImportDeclaration)) {
    const clause = st.importClause
    if (!clause) {
      kept.push(st.getText(sf))
      continue
    }
    const spec = st.moduleSpecifier.getText(sf)
    const def = clause.name && used.has(clause.name.text) ? clause.name.text : undefined
    const bindings = clause.namedBindings
    let named = ''
    if (bindings && ts.isNamespaceImport(bindings)) named = used.has(bindings.name.text) ? `* as ${bindings.name.text}` : ''
    else if (bindings) {
      const els = bindings.elements.filter((e) => used.has(e.name.text)).map((e) => e.getText(sf))
      named = els.length ? `{ ${els.join(', ')} }` : ''
    }
    if (!def && !named) continue
    kept.push(`import ${clause.isTypeOnly ? 'type ' : ''}${[def, named].filter(Boolean).join(', ')} from ${spec}`)
  }
  return `${kept.join('\n')}\n${firstCode ? text.slice(firstCode.getFullStart()).replace(/^\n+/, '\n') : ''}`
}

/** Appends a split part to an existing test file: its imports merged, its helpers unless already there, its tests at the end. */
function mergeInto(existing, part, dest, problems) {
  const dsf = parse(dest, existing)
  const psf = parse(dest, part)
  const destImports = dsf.statements.filter(ts.isImportDeclaration)
  const destNames = new Map()
  for (const st of dsf.statements) for (const n of declaredNames(st)) destNames.set(n, st.getText(dsf).replace(/\s+/g, ' '))
  const importedNames = new Set()
  for (const st of destImports) {
    const c = st.importClause
    if (c?.name) importedNames.add(c.name.text)
    if (c?.namedBindings && ts.isNamespaceImport(c.namedBindings)) importedNames.add(c.namedBindings.name.text)
    else if (c?.namedBindings) for (const e of c.namedBindings.elements) importedNames.add(e.name.text)
  }
  const edits = [] // { at, del, text }
  const newImports = []
  for (const st of psf.statements.filter(ts.isImportDeclaration)) {
    const c = st.importClause
    const spec = st.moduleSpecifier.text
    const same = destImports.find((d) => d.moduleSpecifier.text === spec && !d.importClause?.isTypeOnly && d.importClause?.namedBindings && ts.isNamedImports(d.importClause.namedBindings))
    const missing = []
    if (c?.name && !importedNames.has(c.name.text)) {
      if (destImports.some((d) => d.moduleSpecifier.text === spec && d.importClause?.name))
        problems.push(`${dest}: imports the default of ${spec} under another name than the tests moved into it; merge by hand`)
      else newImports.push(`import ${c.name.text} from '${spec}'`)
    }
    if (c?.namedBindings && ts.isNamespaceImport(c.namedBindings) && !importedNames.has(c.namedBindings.name.text)) newImports.push(`import * as ${c.namedBindings.name.text} from '${spec}'`)
    if (c?.namedBindings && ts.isNamedImports(c.namedBindings)) {
      for (const e of c.namedBindings.elements) if (!importedNames.has(e.name.text)) missing.push(c.isTypeOnly && !e.isTypeOnly ? `type ${e.getText(psf)}` : e.getText(psf))
    }
    if (!missing.length) continue
    if (same) {
      const nb = same.importClause.namedBindings
      const els = [...nb.elements.map((e) => e.getText(dsf)), ...missing]
      edits.push({ at: nb.getStart(dsf), del: nb.end - nb.getStart(dsf), text: `{ ${els.join(', ')} }` })
    } else newImports.push(`import { ${missing.join(', ')} } from '${spec}'`)
    for (const n of missing)
      importedNames.add(
        n
          .replace(/^type /, '')
          .split(' as ')
          .pop(),
      )
  }
  const helpers = []
  const units = []
  for (const st of psf.statements) {
    if (ts.isImportDeclaration(st)) continue
    const names = declaredNames(st)
    if (!names.length) {
      if (callName(st) === 'describe' || firstTitle(st, psf) !== undefined) units.push(st.getFullText(psf))
      else helpers.push(st.getFullText(psf))
      continue
    }
    const clash = names.filter((n) => destNames.has(n) || importedNames.has(n))
    if (!clash.length) helpers.push(st.getFullText(psf))
    else if (!clash.every((n) => destNames.get(n) === st.getText(psf).replace(/\s+/g, ' ')))
      problems.push(`${dest}: the moved tests need ${clash.join(', ')}, which this file already declares differently; merge by hand`)
  }
  const lastImport = destImports[destImports.length - 1]
  const at = lastImport ? lastImport.end : 0
  edits.push({ at, del: 0, text: (newImports.length ? `\n${newImports.join('\n')}` : '') + (helpers.length ? `\n${helpers.join('').replace(/^\n*/, '\n')}` : '') })
  edits.sort((a, b) => b.at - a.at)
  let text = existing
  for (const e of edits) text = text.slice(0, e.at) + e.text + text.slice(e.at + e.del)
  return `${text.replace(/\n*$/, '\n')}${units.join('').replace(/^\n*/, '\n')}\n`
}
