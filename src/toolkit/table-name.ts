import { PgcrewError } from '../errors/pgcrew-error.ts'
import { qname } from './quote.ts'

/**
 * A table, as COPY and the ledger take it: a string `'events'` or `'audit.events'` (split at the dot
 * into schema and table), or its parts `['audit', 'events']`. Each part is taken exactly (case kept,
 * always quoted), so `'Events'` is the table `"Events"`. A name with a dot or a double quote in it is
 * written in the parts form: `['my.schema', 'events']`.
 */
export type TableName = string | readonly string[]

// PostgreSQL cuts a longer identifier to 63 bytes (NAMEDATALEN - 1), which could name another table.
const MAX_IDENTIFIER_BYTES = 63

const FORMS = `"table" or "schema.table", or the parts ['schema', 'table'] for a name with a dot or quote in it`

function refuse(what: string, name: unknown, problem: string): never {
  const shown = typeof name === 'string' ? `"${name}"` : Array.isArray(name) ? JSON.stringify(name) : typeof name
  throw new PgcrewError('INVALID_TABLE_NAME', `${what} ${shown} ${problem}; write ${FORMS}`, { details: { what } })
}

/**
 * The schema (if any) and table of a name, checked. `what` says where the name came from, for the
 * error (`'the ledger option'`, `'copyFrom table'`).
 */
export function tableParts(name: TableName, what = 'table name'): readonly string[] {
  let parts: readonly string[]
  if (typeof name === 'string') {
    if (name.includes('"')) refuse(what, name, 'contains a double quote (a string name is taken exactly, not parsed as SQL: case is already kept)')
    parts = name.split('.')
  } else if (Array.isArray(name) && name.every((p) => typeof p === 'string')) {
    parts = name
  } else {
    refuse(what, name, 'is not a table name')
  }
  if (parts.length === 0) refuse(what, name, 'is empty')
  if (parts.includes('')) refuse(what, name, 'has an empty part')
  if (parts.length > 2) refuse(what, name, `has ${parts.length} parts`)
  for (const part of parts) {
    if (part.includes('\0')) refuse(what, name, 'contains a NUL character')
    if (Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES) refuse(what, name, `has a part longer than ${MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL would cut short`)
  }
  return parts
}

/** The name quoted for SQL: `'audit.Events'` → `"audit"."Events"`. */
export function tableSql(name: TableName, what?: string): string {
  return qname(...tableParts(name, what))
}
