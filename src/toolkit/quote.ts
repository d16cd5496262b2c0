import { PgcrewError } from '../errors/pgcrew-error.ts'

// PostgreSQL text can never contain NUL; rejecting it here beats a confusing server error later.
function rejectNul(value: string, what: string): void {
  if (value.includes('\0')) throw new PgcrewError('INVALID_SQL_TEXT', `${what} contains a NUL character, which PostgreSQL cannot store`)
}

/**
 * Quotes an identifier (table, column, role, channel…) exactly as PostgreSQL's `quote_ident` would
 * when quoting is needed — always quoted, so case is kept: `quoteIdent('MyTable')` → `"MyTable"`.
 */
export function quoteIdent(name: string): string {
  if (typeof name !== 'string' || name === '') throw new PgcrewError('INVALID_SQL_TEXT', 'an identifier must be a non-empty string')
  rejectNul(name, 'identifier')
  return `"${name.replaceAll('"', '""')}"`
}

/** A value `quoteLiteral` can render as SQL text. */
export type LiteralValue = string | number | bigint | boolean | null | undefined

/**
 * Renders a value as a SQL literal, like PostgreSQL's `quote_nullable`: strings with a backslash use
 * the `E'…'` form so the result means the same whatever `standard_conforming_strings` says.
 * Prefer bind parameters; this is for places that take no parameters (SET, NOTIFY, DDL defaults).
 *
 * @example quoteLiteral("it's") // 'it''s'
 */
export function quoteLiteral(value: LiteralValue): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'bigint') return `'${value}'`
  if (typeof value === 'number') return Number.isFinite(value) ? `'${value}'` : `'${value === Infinity ? 'Infinity' : value === -Infinity ? '-Infinity' : 'NaN'}'`
  if (typeof value !== 'string') throw new PgcrewError('INVALID_SQL_TEXT', `cannot render a ${typeof value} as a SQL literal`)
  rejectNul(value, 'literal')
  const body = value.replaceAll("'", "''")
  return value.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`
}

/**
 * A qualified name from its parts, each quoted: `qname('audit', 'Events')` → `"audit"."Events"`.
 * Dots inside a part stay part of that name; split a dotted string yourself if you mean a path.
 */
export function qname(...parts: readonly string[]): string {
  if (parts.length === 0) throw new PgcrewError('INVALID_SQL_TEXT', 'qname needs at least one name part')
  return parts.map(quoteIdent).join('.')
}

const FRAGMENT = Symbol('pgcrew.sql')
type Piece = { readonly text: string } | { readonly value: unknown }

/**
 * A piece of SQL with its parameters kept apart. It has `text` (with `$1`, `$2`… placeholders) and
 * `values`, so node-postgres accepts it directly as a query config: `client.query(sql\`…\`)`.
 */
export class SqlFragment {
  /** The SQL text with `$n` placeholders numbered from 1. */
  readonly text: string
  /** The bind parameters, in placeholder order. */
  readonly values: unknown[]
  /** @internal */
  declare readonly pieces: readonly Piece[]

  // Own plain properties, not getters over #private state: node-postgres clones a query config with
  // its own property descriptors, which would lose private fields.
  /** @internal use the `sql` tag */
  constructor(pieces: readonly Piece[]) {
    Object.defineProperty(this, 'pieces', { value: pieces, enumerable: false })
    Object.defineProperty(this, FRAGMENT, { value: true, enumerable: false })
    const { text, values } = this.compile()
    this.text = text
    this.values = values
  }

  /** `{ text, values }` for any driver; numbering continues from `offset` (for appending to other SQL). */
  compile(offset = 0): { text: string; values: unknown[] } {
    let text = ''
    const values: unknown[] = []
    for (const piece of this.pieces) {
      if ('text' in piece) text += piece.text
      else {
        values.push(piece.value)
        text += `$${offset + values.length}`
      }
    }
    return { text, values }
  }

  /** Shows the SQL, never the values (they may be secrets). */
  toString(): string {
    return this.text
  }

  toJSON(): { text: string; parameterCount: number } {
    return { text: this.text, parameterCount: this.values.length }
  }
}

function isFragment(value: unknown): value is SqlFragment {
  return typeof value === 'object' && value !== null && (value as { [FRAGMENT]?: unknown })[FRAGMENT] === true
}

function piecesOf(value: unknown): readonly Piece[] {
  return isFragment(value) ? value.pieces : [{ value }]
}

/**
 * Tagged template for SQL: interpolated values become bind parameters, nested `sql` fragments are
 * spliced in (their parameters renumbered), `sql.ident(...)` quotes identifiers.
 *
 * @example
 * const q = sql`select * from ${sql.ident('audit', 'Events')} where id = ${id} and ${cond}`
 * await client.query(q) // text: select * from "audit"."Events" where id = $1 and …
 */
export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  const pieces: Piece[] = []
  strings.forEach((s, i) => {
    if (s !== '') pieces.push({ text: s })
    if (i < values.length) pieces.push(...piecesOf(values[i]))
  })
  return new SqlFragment(pieces)
}

/** A quoted (possibly qualified) identifier: `sql.ident('public', 'users')`. */
sql.ident = (...parts: readonly string[]): SqlFragment => new SqlFragment([{ text: qname(...parts) }])

/** Trusted SQL text inserted as is. Never pass user input. */
sql.raw = (text: string): SqlFragment => new SqlFragment([{ text }])

/** A literal rendered inline (for statements that cannot take parameters, like SET or DDL). */
sql.literal = (value: LiteralValue): SqlFragment => new SqlFragment([{ text: quoteLiteral(value) }])

/** Joins values and fragments with a separator: `sql.join([a, b, c])` → `$1, $2, $3`. */
sql.join = (items: readonly unknown[], separator: string | SqlFragment = ', '): SqlFragment => {
  const sep = typeof separator === 'string' ? [{ text: separator }] : separator.pieces
  const pieces: Piece[] = []
  items.forEach((item, i) => {
    if (i > 0) pieces.push(...sep)
    pieces.push(...piecesOf(item))
  })
  return new SqlFragment(pieces)
}

/** True for a value made by the `sql` tag (or its helpers). */
export function isSqlFragment(value: unknown): value is SqlFragment {
  return isFragment(value)
}
