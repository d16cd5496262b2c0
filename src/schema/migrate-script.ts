import { splitStatements, tokenizeSql } from './split-statements.ts'
import { renderTemplate } from './migrate-template.ts'
import type { TemplateDialect, TemplateVariables } from './migrate-template.ts'

/** A statement ready to run: templates filled, with the script file and line it came from. */
export interface PreparedStatement {
  sql: string
  file: string
  line: number
}

/** Something in a script that makes it unfit to run the way it is marked (in the transaction, or outside). */
export interface ScriptProblem {
  code: 'MIGRATE_NON_TRANSACTIONAL' | 'MIGRATE_TRANSACTION_CONTROL' | 'MIGRATE_BAD_HEADER'
  file: string
  line: number
  message: string
}

/** A script split, rendered and checked. Nothing has run yet. */
export interface PreparedScript {
  file: string
  /** False for a script whose first line is `--! no-transaction`: its statements run one by one, in autocommit. */
  transaction: boolean
  statements: PreparedStatement[]
  notices: string[]
  problems: ScriptProblem[]
}

/**
 * Up to `count` words at parenthesis depth 0, upper-cased; quoted identifiers kept as written so
 * `ALTER DATABASE "x" SET TABLESPACE` still lines up word by word.
 */
function topLevelWords(sql: string, count: number): string[] {
  const words: string[] = []
  let depth = 0
  for (const token of tokenizeSql(sql)) {
    if (token.kind === 'other' && token.text === '(') depth++
    else if (token.kind === 'other' && token.text === ')') depth--
    else if (depth === 0 && (token.kind === 'word' || token.kind === 'ident')) words.push(token.kind === 'word' ? token.text.toUpperCase() : token.text)
    if (words.length >= count) break
  }
  return words
}

// Each test gets the first words of a statement and answers with the command PostgreSQL would
// refuse inside a transaction block ("… cannot run inside a transaction block").
const NON_TRANSACTIONAL: Array<(w: string[], sql: string) => string | undefined> = [
  (w) => (w[0] === 'CREATE' && (w[1] === 'INDEX' ? w[2] : w[1] === 'UNIQUE' && w[2] === 'INDEX' ? w[3] : '') === 'CONCURRENTLY' ? 'CREATE INDEX CONCURRENTLY' : undefined),
  (w) => (w[0] === 'DROP' && w[1] === 'INDEX' && w[2] === 'CONCURRENTLY' ? 'DROP INDEX CONCURRENTLY' : undefined),
  (w, sql) => {
    if (w[0] !== 'REINDEX') return undefined
    if (w[1] === 'SYSTEM' || w[1] === 'DATABASE') return `REINDEX ${w[1]}`
    return w.includes('CONCURRENTLY') || /^\s*reindex\s*\([^)]*\bconcurrently\b(?!\s+(false|off|0)\b)/i.test(sql) ? 'REINDEX CONCURRENTLY' : undefined
  },
  (w) => (w[0] === 'VACUUM' ? 'VACUUM' : undefined),
  (w) => ((w[0] === 'CREATE' || w[0] === 'DROP') && (w[1] === 'DATABASE' || w[1] === 'TABLESPACE' || w[1] === 'SUBSCRIPTION') ? `${w[0]} ${w[1]}` : undefined),
  (w) => (w[0] === 'ALTER' && w[1] === 'DATABASE' && w[3] === 'SET' && w[4] === 'TABLESPACE' ? 'ALTER DATABASE … SET TABLESPACE' : undefined),
  (w) => (w[0] === 'ALTER' && w[1] === 'SYSTEM' ? 'ALTER SYSTEM' : undefined),
  (w) => (w[0] === 'ALTER' && w[1] === 'TABLE' && w.includes('DETACH') && w.at(-1) === 'CONCURRENTLY' ? 'ALTER TABLE … DETACH PARTITION … CONCURRENTLY' : undefined),
  (w) => (w[0] === 'DISCARD' && w[1] === 'ALL' ? 'DISCARD ALL' : undefined),
  (w) => (w[0] === 'CLUSTER' && (w.length === 1 || (w.length === 2 && w[1] === 'VERBOSE')) ? 'CLUSTER (of every table)' : undefined),
]

type Control = 'begin' | 'commit' | 'other'

function transactionControl(w: string[]): Control | undefined {
  switch (w[0]) {
    case 'BEGIN':
      return 'begin'
    case 'START':
      return w[1] === 'TRANSACTION' ? 'begin' : undefined
    case 'COMMIT':
      return w[1] === 'PREPARED' ? 'other' : 'commit'
    case 'END':
      return 'commit'
    // Savepoints are fine inside the runner's transaction; ROLLBACK TO one is too.
    case 'ROLLBACK':
      return w[1] === 'TO' || ((w[1] === 'TRANSACTION' || w[1] === 'WORK') && w[2] === 'TO') ? undefined : 'other'
    case 'ABORT':
      return 'other'
    case 'PREPARE':
      return w[1] === 'TRANSACTION' ? 'other' : undefined
    default:
      return undefined
  }
}

/** The header that takes a script out of the migration's transaction (graphile-migrate's spelling). */
export const NO_TRANSACTION_HEADER = '--! no-transaction'

/** Whether the first line is the no-transaction header; another `--!` header is a problem, not a comment. */
function readHeader(text: string, file: string): { transaction: boolean; problem?: ScriptProblem } {
  const first = text.split('\n', 1)[0]!.trimEnd()
  if (!first.startsWith('--!')) return { transaction: true }
  if (first.replace(/^--!\s*/, '').toLowerCase() === 'no-transaction') return { transaction: false }
  return {
    transaction: true,
    problem: {
      code: 'MIGRATE_BAD_HEADER',
      file,
      line: 1,
      message: `${file} line 1: unknown header ${JSON.stringify(first)}; the one pgcrew knows is ${NO_TRANSACTION_HEADER} (or write -- for a comment)`,
    },
  }
}

/**
 * Splits a script, fills its templates and checks every statement against the way it runs. In
 * the migration's transaction (the default): a leading BEGIN and a trailing COMMIT are dropped with
 * a notice (psql-style scripts); other transaction control and commands PostgreSQL refuses in a
 * transaction become problems. Under `--! no-transaction` every statement runs on its own, so
 * those commands are fine and any transaction control is a problem.
 */
export function prepareScript(text: string, file: string, variables: TemplateVariables, templates: TemplateDialect = 'sql'): PreparedScript {
  const header = readHeader(text, file)
  const split = splitStatements(text, { file })
  const rendered = split.map((s) => ({ sql: renderTemplate(s.sql, variables, { file, line: s.line }, templates), file, line: s.line }))
  const notices: string[] = []
  const problems: ScriptProblem[] = header.problem ? [header.problem] : []
  const statements: PreparedStatement[] = []

  rendered.forEach((statement, index) => {
    const words = topLevelWords(statement.sql, 8)
    const control = transactionControl(words)
    const at = `${file} line ${statement.line}`
    if (!header.transaction) {
      if (control !== undefined) {
        problems.push({
          code: 'MIGRATE_TRANSACTION_CONTROL',
          file,
          line: statement.line,
          message: `${at}: ${words.slice(0, 2).join(' ')} — under ${NO_TRANSACTION_HEADER} each statement runs and commits on its own, so remove it`,
        })
      } else {
        statements.push(statement)
      }
      return
    }
    if (control === 'begin' && index === 0) {
      notices.push(`${at}: dropped ${words.slice(0, 2).join(' ')} — pgcrew runs the whole migration in one transaction of its own`)
      return
    }
    if (control === 'commit' && index === rendered.length - 1) {
      notices.push(`${at}: dropped the trailing ${words[0]} — pgcrew commits once, after every script has run`)
      return
    }
    if (control !== undefined) {
      problems.push({
        code: 'MIGRATE_TRANSACTION_CONTROL',
        file,
        line: statement.line,
        message: `${at}: ${words.slice(0, 2).join(' ')} — a script may only open with BEGIN and end with COMMIT; pgcrew owns the transaction, so remove this one`,
      })
      return
    }
    for (const test of NON_TRANSACTIONAL) {
      const command = test(words, statement.sql)
      if (command !== undefined) {
        problems.push({
          code: 'MIGRATE_NON_TRANSACTIONAL',
          file,
          line: statement.line,
          message: `${at}: ${command} cannot run inside a transaction; move it to an update script of its own whose first line is ${NO_TRANSACTION_HEADER}`,
        })
        return
      }
    }
    if (words[0] === 'ALTER' && words[1] === 'TYPE' && words[3] === 'ADD' && words[4] === 'VALUE') {
      notices.push(`${at}: ALTER TYPE … ADD VALUE — the new enum value cannot be used until the migration commits, not even by a later script`)
    }
    statements.push(statement)
  })
  return { file, transaction: header.transaction, statements, notices, problems }
}
