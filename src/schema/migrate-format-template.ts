import { PgcrewError } from '../errors/pgcrew-error.ts'
import { quoteIdent, quoteLiteral } from '../toolkit/quote.ts'
import type { SqlToken } from './split-statements.ts'
import type { TemplateContext, TemplateVariables } from './migrate-template.ts'

// The `'format'` dialect inside quotes. Python's str.format sees no SQL, so a script written for it
// may put `{{}}` in a string ('{}' once formatted) and `{name}` anywhere. We read each quote with
// the SQL tokenizer and quote every value for the place it lands, so no value can end the quote:
//   '…{x}…'   the string is rebuilt around the value (quoteLiteral, E'' when it holds a backslash)
//   "…{x}…"   the identifier is rebuilt around the value (quoteIdent)
//   $t$…$t$   the body is read as SQL (function bodies are), recursively; a value may not spell $t$
//   comments  the value goes in as text, unless it would end the comment
// E'', U&'' and U&"" keep their braces rules but refuse a {name}: their escapes would need a
// decoder, and a plain '' string says the same thing.

const PIECE = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g

/** `{{`/`}}` unescaped and each `{name}` replaced by `fill(name, line)`; `line` counts from `firstLine`. */
function formatText(text: string, firstLine: number, ctx: TemplateContext, where: string, fill: (name: string, line: number) => string): string {
  let out = ''
  let last = 0
  for (const match of text.matchAll(PIECE)) {
    const line = firstLine + (text.slice(0, match.index).match(/\n/g)?.length ?? 0)
    out += text.slice(last, match.index)
    last = match.index + match[0].length
    const piece = match[0]
    if (piece === '{{' || piece === '}}') {
      out += piece[0]
      continue
    }
    if (piece === '{') ctx.fail(line, `a lone { ${where}; in the format dialect every brace is a template brace, so write {{ for a literal one`)
    if (piece === '}') ctx.fail(line, `a lone } ${where}; in the format dialect every brace is a template brace, so write }} for a literal one`)
    const inner = match[1]!
    if (/^[A-Za-z_][A-Za-z0-9_]*!/.test(inner)) {
      ctx.fail(line, `{${inner}} ${where}: a value there becomes part of the text around it, so write {${inner.slice(0, inner.indexOf('!'))}} without !ident or !literal`)
    }
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(inner)) ctx.fail(line, `{${inner}} ${where} is not a {name} placeholder; write {{ and }} for literal braces`)
    out += fill(inner, line)
  }
  return out + text.slice(last)
}

function asText(value: TemplateVariables[string], name: string, line: number, ctx: TemplateContext, where: string): string {
  if (value === null) ctx.fail(line, `{${name}} is null, which has no text to put ${where}`)
  return String(value)
}

const hasPlaceholder = (text: string): boolean => /\{[^{]/.test(text.replaceAll('{{', ''))

/** Renders one string, quoted identifier, dollar quote or comment token in the `'format'` dialect. */
export function renderQuotedToken(token: SqlToken, ctx: TemplateContext): string {
  const { text, line } = token
  const refuse =
    (where: string) =>
    (name: string, at: number): string =>
      ctx.fail(at, `{${name}} ${where}: pgcrew cannot tell how to quote a value there; use a plain '…' string, or {{ }} for literal braces`)

  if (token.kind === 'comment') {
    const block = text.startsWith('/*')
    return formatText(text, line, ctx, 'in a comment', (name, at) => {
      const value = asText(ctx.value(name, at), name, at, ctx, 'in a comment')
      if (block ? /\*\/|\/\*/.test(value) : /[\r\n]/.test(value)) ctx.fail(at, `the value of {${name}} would end the comment it is in; take {${name}} out of the comment`)
      return value
    })
  }
  if (token.kind === 'string') {
    if (!text.startsWith("'")) return formatText(text, line, ctx, "in an E'' or U&'' string", refuse("in an E'' or U&'' string"))
    if (!hasPlaceholder(text)) return formatText(text, line, ctx, 'in a string', refuse('in a string'))
    const content = text.slice(1, -1).replaceAll("''", "'")
    return quoteLiteral(formatText(content, line, ctx, 'in a string', (name, at) => asText(ctx.value(name, at), name, at, ctx, 'in a string')))
  }
  if (token.kind === 'ident') {
    if (!text.startsWith('"')) return formatText(text, line, ctx, 'in a U&"" identifier', refuse('in a U&"" identifier'))
    if (!hasPlaceholder(text)) return formatText(text, line, ctx, 'in a quoted identifier', refuse('in a quoted identifier'))
    const content = text.slice(1, -1).replaceAll('""', '"')
    return quoteIdent(formatText(content, line, ctx, 'in a quoted identifier', (name, at) => asText(ctx.value(name, at), name, at, ctx, 'in a quoted identifier')))
  }
  if (token.kind === 'dollar') {
    const delimiter = /^\$[^$]*\$/.exec(text)![0]
    const body = text.slice(delimiter.length, -delimiter.length)
    let rendered: string
    try {
      rendered = ctx.nested(body, line)
    } catch (error) {
      // A body that is not SQL (a plain text constant with a stray quote, plpython…): braces only.
      if (!(error instanceof PgcrewError && error.code.startsWith('SPLIT_'))) throw error
      rendered = formatText(body, line, ctx, `in a ${delimiter} quote whose text is not SQL`, refuse(`in a ${delimiter} quote whose text is not SQL`))
    }
    if (rendered.includes(delimiter)) {
      ctx.fail(line, `a template value would end the ${delimiter} quote starting here (it contains ${delimiter}); change the value or the quote's tag`)
    }
    return delimiter + rendered + delimiter
  }
  return text
}
