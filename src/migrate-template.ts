import { PgcrewError } from './errors.ts'
import { quoteIdent, quoteLiteral } from './quote.ts'
import { tokenizeSql } from './split-statements.ts'
import type { SqlToken } from './split-statements.ts'

/** Values for `{name}` placeholders in migration scripts. */
export type TemplateVariables = Readonly<Record<string, string | number | bigint | boolean | null>>

/** Where a statement came from, so template errors can point at it. */
export interface TemplateSource {
  file?: string
  line?: number
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * Fills the placeholders of one statement: `{name}` becomes a quoted identifier, `{name!literal}`
 * a quoted literal (`{name!ident}` spells out the default), `{{` and `}}` literal braces.
 * Only SQL code is touched: strings, comments and $$ bodies pass through unchanged, so a value
 * can never end a quote early. Throws `MIGRATE_TEMPLATE` for unknown names or stray braces.
 * @example renderTemplate('GRANT SELECT ON t TO {username}', { username: 'web' }) // GRANT SELECT ON t TO "web"
 */
export function renderTemplate(sql: string, variables: TemplateVariables, source: TemplateSource = {}): string {
  const tokens = tokenizeSql(sql, { file: source.file })
  const fail = (token: SqlToken, problem: string): never => {
    const line = (source.line ?? 1) + token.line - 1
    const at = source.file === undefined ? `line ${line}` : `${source.file} line ${line}`
    throw new PgcrewError('MIGRATE_TEMPLATE', `${at}: ${problem}`, { details: { file: source.file, line } })
  }
  const is = (token: SqlToken | undefined, text: string): boolean => token?.kind === 'other' && token.text === text

  let out = ''
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (is(token, '}')) {
      if (!is(tokens[i + 1], '}')) fail(token, 'a lone } in SQL code; write }} for a literal brace')
      out += '}'
      i++
    } else if (is(token, '{')) {
      if (is(tokens[i + 1], '{')) { out += '{'; i++; continue }
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
      if (!Object.hasOwn(variables, name!.text)) {
        const known = Object.keys(variables).sort().join(', ') || 'none'
        const how = name!.text === 'username' ? 'pass user (--user), the application role' : 'pass it in variables'
        fail(token, `no value for {${name!.text}} (known: ${known}); ${how}`)
      }
      const value = variables[name!.text]!
      if (kind === 'literal') out += quoteLiteral(value)
      else if (typeof value === 'string' && value !== '') out += quoteIdent(value)
      else fail(token, `{${name!.text}} is used as an identifier but its value is not a non-empty string; use {${name!.text}!literal} for a value`)
      i = close
    } else {
      out += token.text
    }
  }
  return out
}
