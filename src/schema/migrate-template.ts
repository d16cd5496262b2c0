import { PgcrewError } from '../errors/pgcrew-error.ts'
import { quoteIdent, quoteLiteral } from '../toolkit/quote.ts'
import { tokenizeSql } from './split-statements.ts'
import type { SqlToken } from './split-statements.ts'
import { renderQuotedToken } from './migrate-format-template.ts'

/** Values for `{name}` placeholders in migration scripts. */
export type TemplateVariables = Readonly<Record<string, string | number | bigint | boolean | null>>

/**
 * How braces in a script are read. `'sql'` (the default): only SQL code is a template; strings,
 * comments and $$ bodies pass through untouched. `'format'`: the whole script is a Python
 * `str.format` template (piwheels' scripts), so `{{`/`}}` and `{name}` count inside quotes too.
 */
export type TemplateDialect = 'sql' | 'format'

/** The dialects, in the order the docs list them; `'sql'` is the default. */
export const TEMPLATE_DIALECTS: readonly TemplateDialect[] = Object.freeze(['sql', 'format'])

/** Where a statement came from, so template errors can point at it. */
export interface TemplateSource {
  file?: string
  line?: number
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** What the renderers of quoted text need: values, and errors that point at a script line. */
export interface TemplateContext {
  /** Throws `MIGRATE_TEMPLATE` at `line` (1-based within the text being rendered). */
  fail(line: number, problem: string): never
  /** The value of `{name}`, or a failure naming the known names. */
  value(name: string, line: number): TemplateVariables[string]
  /** Renders `text` (starting at `line`) as a format-dialect template of its own: a $$ body. */
  nested(text: string, line: number): string
}

function context(variables: TemplateVariables, source: TemplateSource): TemplateContext {
  const fail = (line: number, problem: string): never => {
    const at = (source.line ?? 1) + line - 1
    const where = source.file === undefined ? `line ${at}` : `${source.file} line ${at}`
    throw new PgcrewError('MIGRATE_TEMPLATE', `${where}: ${problem}`, { details: { file: source.file, line: at } })
  }
  return {
    fail,
    value(name, line) {
      if (!Object.hasOwn(variables, name)) {
        const known = Object.keys(variables).sort().join(', ') || 'none'
        const how = name === 'username' ? 'pass user (--user), the application role' : 'pass it in variables'
        fail(line, `no value for {${name}} (known: ${known}); ${how}`)
      }
      return variables[name]!
    },
    nested: (text, line) => renderTemplate(text, variables, { file: source.file, line: (source.line ?? 1) + line - 1 }, 'format'),
  }
}

/**
 * Fills the placeholders of one statement: `{name}` becomes a quoted identifier, `{name!literal}`
 * a quoted literal (`{name!ident}` spells out the default), `{{` and `}}` literal braces.
 * In the `'sql'` dialect only SQL code is touched: strings, comments and $$ bodies pass through
 * unchanged. In `'format'` braces count everywhere, and a value inside a quote is quoted for that
 * quote (see migrate-format-template.ts). Either way a value can never end a quote early.
 * Throws `MIGRATE_TEMPLATE` for unknown names or stray braces.
 * @example renderTemplate('GRANT SELECT ON t TO {username}', { username: 'web' }) // GRANT SELECT ON t TO "web"
 */
export function renderTemplate(sql: string, variables: TemplateVariables, source: TemplateSource = {}, dialect: TemplateDialect = 'sql'): string {
  const tokens = tokenizeSql(sql, { file: source.file })
  const ctx = context(variables, source)
  const fail = (token: SqlToken, problem: string): never => ctx.fail(token.line, problem)
  const is = (token: SqlToken | undefined, text: string): boolean => token?.kind === 'other' && token.text === text

  let out = ''
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (is(token, '}')) {
      if (!is(tokens[i + 1], '}')) fail(token, 'a lone } in SQL code; write }} for a literal brace')
      out += '}'
      i++
    } else if (is(token, '{')) {
      if (is(tokens[i + 1], '{')) {
        out += '{'
        i++
        continue
      }
      const name = tokens[i + 1]
      let kind = 'ident'
      let close = i + 2
      if (is(tokens[close], '!')) {
        kind = tokens[close + 1]?.kind === 'word' ? tokens[close + 1]!.text : ''
        close += 2
      }
      if (name?.kind !== 'word' || !NAME.test(name.text) || !is(tokens[close], '}')) {
        fail(token, 'a { that does not start a {name}, {name!ident} or {name!literal} placeholder; write {{ for a literal brace')
      }
      if (kind !== 'ident' && kind !== 'literal') fail(token, `unknown placeholder form {${name!.text}!${kind}}; use !ident or !literal`)
      const value = ctx.value(name!.text, token.line)
      if (kind === 'literal') out += quoteLiteral(value)
      else if (typeof value === 'string' && value !== '') out += quoteIdent(value)
      else fail(token, `{${name!.text}} is used as an identifier but its value is not a non-empty string; use {${name!.text}!literal} for a value`)
      i = close
    } else if (dialect === 'format' && token.kind !== 'other' && (token.text.includes('{') || token.text.includes('}'))) {
      out += renderQuotedToken(token, ctx)
    } else {
      out += token.text
    }
  }
  return out
}
