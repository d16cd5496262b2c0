import { PgcrewError } from '../errors/pgcrew-error.ts'

/** One statement of a script, with the 1-based line where its first token starts. */
export interface SqlStatement {
  sql: string
  line: number
}

/** Where the text came from, for error messages. */
export interface SplitOptions {
  file?: string
}

/**
 * A lexical token of PostgreSQL SQL. `word` is a keyword or unquoted identifier, `ident` a
 * "quoted identifier" (also U&"…"), `string` any quoted literal ('…', E'…', U&'…', B'…'),
 * `dollar` a $tag$ … $tag$ string, `other` a single character or a `$1` parameter.
 */
export interface SqlToken {
  kind: 'space' | 'comment' | 'word' | 'number' | 'string' | 'ident' | 'dollar' | 'other'
  text: string
  start: number
  line: number
}

const IDENT_START = /[A-Za-z_\u0080-\uffff]/
const IDENT_CONT = /[A-Za-z0-9_$\u0080-\uffff]/y
const DOLLAR_DELIM = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y
const NUMBER = /[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?/y
const SPACE = /[ \t\n\r\f\v]+/y
const QUOTE_CONTINUE = /[ \t\r\f\v]*(?:--[^\n]*)?\n(?:[ \t\n\r\f\v]+|--[^\n]*\n)*'/y

function where(file: string | undefined, line: number): string {
  return file === undefined ? `line ${line}` : `${file} line ${line}`
}

/**
 * Splits SQL into PostgreSQL lexical tokens, following the server's scanner (scan.l) closely
 * enough that semicolons, quotes and comments are never misread. Throws `SPLIT_UNTERMINATED`
 * for a quote or comment that never ends and `SPLIT_PSQL_META` for a psql backslash command.
 */
export function tokenizeSql(sql: string, options: SplitOptions = {}): SqlToken[] {
  const tokens: SqlToken[] = []
  let i = 0
  let line = 1
  const push = (kind: SqlToken['kind'], end: number): void => {
    const text = sql.slice(i, end)
    tokens.push({ kind, text, start: i, line })
    for (let k = text.indexOf('\n'); k !== -1; k = text.indexOf('\n', k + 1)) line++
    i = end
  }
  const unterminated = (what: string, hint: string): never => {
    throw new PgcrewError('SPLIT_UNTERMINATED', `unterminated ${what} starting at ${where(options.file, line)}: ${hint}`, { details: { file: options.file, line } })
  }
  // Finds the end of a quoted run; `backslash` is true for E'' strings, where \ escapes anything.
  const closeQuote = (from: number, quote: string, backslash: boolean): number => {
    for (let k = from; k < sql.length; k++) {
      const c = sql[k]
      if (backslash && c === '\\') k++
      else if (c === quote) {
        if (sql[k + 1] === quote) k++
        else return k + 1
      }
    }
    return -1
  }

  // The index of the quote that continues a string after whitespace holding a newline, or -1.
  const continuation = (from: number): number => {
    QUOTE_CONTINUE.lastIndex = from
    return QUOTE_CONTINUE.test(sql) ? QUOTE_CONTINUE.lastIndex - 1 : -1
  }

  while (i < sql.length) {
    const c = sql[i]!
    const next = sql[i + 1]
    SPACE.lastIndex = i
    if (SPACE.test(sql)) {
      push('space', SPACE.lastIndex)
    } else if (c === '-' && next === '-') {
      // The newline is not part of the comment: dropping the comment must not glue two lines.
      const nl = sql.indexOf('\n', i)
      push('comment', nl === -1 ? sql.length : nl)
    } else if (c === '/' && next === '*') {
      let depth = 0
      let k = i
      for (; k < sql.length; k++) {
        if (sql[k] === '/' && sql[k + 1] === '*') {
          depth++
          k++
        } else if (sql[k] === '*' && sql[k + 1] === '/') {
          depth--
          k++
          if (depth === 0) break
        }
      }
      if (depth !== 0) unterminated('/* comment', 'add the missing */ (comments nest in PostgreSQL, so every /* needs its own */)')
      push('comment', k + 1)
    } else if (c === "'") {
      const end = closeQuote(i + 1, "'", false)
      if (end === -1) unterminated('quoted string', "close it with ' (write a quote inside a string as '')")
      push('string', end)
    } else if (c === '"') {
      const end = closeQuote(i + 1, '"', false)
      if (end === -1) unterminated('quoted identifier', 'close it with " (write a quote inside an identifier as "")')
      push('ident', end)
    } else if (c === '$') {
      DOLLAR_DELIM.lastIndex = i
      const match = DOLLAR_DELIM.exec(sql)
      if (match !== null) {
        const delimiter = match[0]
        const close = sql.indexOf(delimiter, i + delimiter.length)
        if (close === -1) unterminated(`dollar-quoted string ${delimiter}`, `close it with ${delimiter}`)
        push('dollar', close + delimiter.length)
      } else {
        // $1 parameters (and a lone $) are ordinary code, never the start of a quote.
        let k = i + 1
        while (k < sql.length && sql[k]! >= '0' && sql[k]! <= '9') k++
        push('other', k)
      }
    } else if (IDENT_START.test(c)) {
      // Identifiers may contain $ (a$b$c is one word), which is why $ is only a quote at a word start.
      let k = i + 1
      IDENT_CONT.lastIndex = k
      while (k < sql.length && IDENT_CONT.test(sql)) IDENT_CONT.lastIndex = ++k
      const word = sql.slice(i, k)
      if ((word === 'e' || word === 'E') && sql[k] === "'") {
        let end = closeQuote(k + 1, "'", true)
        if (end === -1) unterminated("E'' string", "close it with ' (in E'' strings \\' is an escaped quote, not the end)")
        // E'a'<newline>'b\'' is ONE escape string (scan.l's quotecontinue), so \' there is still escaped.
        for (let more = continuation(end); more !== -1; more = continuation(end)) {
          end = closeQuote(more + 1, "'", true)
          if (end === -1) unterminated("E'' string (continued)", "close it with '")
        }
        push('string', end)
      } else if ((word === 'u' || word === 'U') && sql[k] === '&' && (sql[k + 1] === "'" || sql[k + 1] === '"')) {
        const quote = sql[k + 1]!
        const end = closeQuote(k + 2, quote, false)
        if (end === -1) unterminated(`U&${quote} ${quote === "'" ? 'string' : 'identifier'}`, `close it with ${quote}`)
        push(quote === "'" ? 'string' : 'ident', end)
      } else {
        push('word', k)
      }
    } else if (c >= '0' && c <= '9') {
      NUMBER.lastIndex = i
      NUMBER.test(sql)
      push('number', NUMBER.lastIndex)
    } else if (c === '\\') {
      const command = /\\[A-Za-z!?.]*/y
      command.lastIndex = i
      const name = command.exec(sql)?.[0] ?? '\\'
      throw new PgcrewError('SPLIT_PSQL_META', `psql meta-command ${name} at ${where(options.file, line)} is not SQL: pgcrew sends each statement to the server itself, so remove it from the script`, {
        details: { file: options.file, line },
      })
    } else {
      push('other', i + 1)
    }
  }
  return tokens
}

/**
 * Splits a script into statements with their starting line numbers, the way psql does: a `;`
 * ends a statement unless it is inside quotes, comments, parentheses or a BEGIN ATOMIC body.
 * Comments before a statement and empty statements are dropped.
 * @example splitStatements("SELECT ';'; -- done\nSELECT $1") // [{ sql: "SELECT ';'", line: 1 }, { sql: 'SELECT $1', line: 2 }]
 */
export function splitStatements(sql: string, options: SplitOptions = {}): SqlStatement[] {
  const statements: SqlStatement[] = []
  let first: SqlToken | undefined
  let last: SqlToken | undefined
  let parenDepth = 0
  let beginDepth = 0
  // psql's heuristic: only CREATE [OR REPLACE] FUNCTION|PROCEDURE can hold a BEGIN ATOMIC … END body.
  let leading = ''
  let wordCount = 0

  const finish = (): void => {
    if (first !== undefined && last !== undefined) {
      statements.push({ sql: sql.slice(first.start, last.start + last.text.length), line: first.line })
    }
    first = last = undefined
    parenDepth = beginDepth = wordCount = 0
    leading = ''
  }

  for (const token of tokenizeSql(sql, options)) {
    if (token.kind === 'other' && token.text === ';' && parenDepth === 0 && beginDepth === 0) {
      finish()
      continue
    }
    if (token.kind === 'space' || token.kind === 'comment') {
      // Comments inside a statement stay in it verbatim; only leading ones are dropped.
      continue
    }
    first ??= token
    last = token
    if (token.kind === 'other') {
      if (token.text === '(') parenDepth++
      else if (token.text === ')' && parenDepth > 0) parenDepth--
    } else if (token.kind === 'word') {
      const word = token.text.toLowerCase()
      if (wordCount < 4 && ['create', 'or', 'replace', 'function', 'procedure'].includes(word)) leading += word[0]
      else if (wordCount < 4) leading += ' '
      wordCount++
      if (/^c(f|p|orf|orp)/.test(leading) && parenDepth === 0) {
        if (word === 'begin') beginDepth++
        else if (word === 'case' && beginDepth > 0) beginDepth++
        else if (word === 'end' && beginDepth > 0) beginDepth--
      }
    }
  }
  finish()
  return statements
}
