import type { EventEmitter } from 'node:events'
import type pg from 'pg'
import { mapDatabaseError } from '../errors/database-error.ts'
import { statementName } from '../connect/connect-client.ts'
import { onOneClient, run, type ConnectionTarget } from './toolkit-target.ts'

/** A column or parameter type: the OID and the server's name for it (`format_type`). */
export interface TypeInfo {
  readonly oid: number
  /** e.g. `integer`, `character varying(20)`, `timestamp with time zone`. */
  readonly name: string
}

/** A column of a prepared statement's result. */
export interface ColumnInfo extends TypeInfo {
  readonly column: string
  /** The table the column comes from (pg_class OID), 0 for an expression. */
  readonly tableOid: number
}

/**
 * A statement the server has parsed and described. Running it uses a named statement, which node-postgres
 * caches per physical connection: each connection parses and plans it once, then only binds and executes.
 *
 * @example
 * const byId = await prepare(db, 'select id, email from users where id = $1')
 * byId.columnNames // ['id', 'email'];  byId.parameterTypes[0].name // 'integer'
 * const rows = await byId.rows([42])
 */
export interface PreparedStatement<R extends pg.QueryResultRow = any> {
  /** The statement name on the server (derived from the text, so equal SQL shares one name). */
  readonly name: string
  readonly text: string
  readonly columnNames: readonly string[]
  readonly columnTypes: readonly ColumnInfo[]
  readonly parameterTypes: readonly TypeInfo[]
  /** Runs the statement on the target (default: the Database it was prepared on); the full pg result. */
  query(params?: readonly unknown[], on?: ConnectionTarget): Promise<pg.QueryResult<R>>
  rows(params?: readonly unknown[], on?: ConnectionTarget): Promise<R[]>
  /** The first row, or undefined when there is none. */
  first(params?: readonly unknown[], on?: ConnectionTarget): Promise<R | undefined>
}

interface Described {
  fields: { name: string; tableID: number; dataTypeID: number; dataTypeModifier: number }[]
  parameterTypeIds: number[]
}

type WireConnection = EventEmitter & {
  parsedStatements: Record<string, string>
  parse(msg: { name: string; text: string; types: number[] }): void
  describe(msg: { type: 'S'; name: string }): void
  sync(): void
}

/**
 * A node-postgres "submittable": pg runs it in its query queue like any query and routes the
 * responses here. Parse (unless this connection has it) + Describe Statement + Sync yields the
 * ParameterDescription and RowDescription (or NoData) without executing anything.
 */
class DescribeStatement {
  readonly name: string
  readonly text: string
  readonly result: Promise<Described>
  #resolve!: (d: Described) => void
  #reject!: (e: unknown) => void
  #fields: Described['fields'] = []
  #parameterTypeIds: number[] = []
  #connection: WireConnection | undefined
  readonly #onParams = (msg: { dataTypeIDs: number[] }): void => {
    this.#parameterTypeIds = msg.dataTypeIDs
  }

  constructor(name: string, text: string) {
    this.name = name
    this.text = text
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }

  submit(connection: WireConnection): void {
    this.#connection = connection
    connection.on('parameterDescription', this.#onParams)
    if (connection.parsedStatements[this.name] === undefined) connection.parse({ name: this.name, text: this.text, types: [] })
    connection.describe({ type: 'S', name: this.name })
    connection.sync()
  }

  handleRowDescription(msg: { fields: Described['fields'] }): void {
    this.#fields = msg.fields
  }

  // pg hands an error to the active query and then forgets it (no handleReadyForQuery follows), so
  // this settles the statement; the Sync already sent brings the connection back to idle.
  handleError(error: unknown): void {
    this.#connection?.removeListener('parameterDescription', this.#onParams)
    this.#reject(mapDatabaseError(error))
  }

  handleReadyForQuery(): void {
    this.#connection?.removeListener('parameterDescription', this.#onParams)
    this.#resolve({ fields: this.#fields, parameterTypeIds: this.#parameterTypeIds })
  }

  // Never sent for a Describe, but pg calls these on whatever query is active.
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

/** Asks the server to parse and describe `text` on this connection, without running it. */
export async function describeStatement(client: pg.ClientBase, text: string, name = statementName(text)): Promise<Described> {
  const describe = new DescribeStatement(name, text)
  client.query(describe as never)
  return describe.result
}

/** Prepares `text` (parameters `$1`, `$2`…) and reads its parameter and column types from the server. */
export async function prepare<R extends pg.QueryResultRow = any>(target: ConnectionTarget, text: string): Promise<PreparedStatement<R>> {
  const name = statementName(text)
  const { columnTypes, parameterTypes } = await onOneClient(target, async (client) => {
    const described = await describeStatement(client, text, name)
    const oids = [...described.fields.map((f) => f.dataTypeID), ...described.parameterTypeIds]
    const mods = [...described.fields.map((f) => f.dataTypeModifier), ...described.parameterTypeIds.map(() => -1)]
    const { rows } = await run<{ name: string }>(client, 'SELECT format_type(t.oid, t.mod) AS name FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS t(oid, mod, i) ORDER BY t.i', [oids, mods])
    const typeName = (i: number): string => rows[i]?.name ?? 'unknown'
    const columns: ColumnInfo[] = described.fields.map((f, i) => Object.freeze({ column: f.name, oid: f.dataTypeID, name: typeName(i), tableOid: f.tableID }))
    const params: TypeInfo[] = described.parameterTypeIds.map((oid, i) => Object.freeze({ oid, name: typeName(described.fields.length + i) }))
    return { columnTypes: Object.freeze(columns), parameterTypes: Object.freeze(params) }
  })

  const execute = (params: readonly unknown[] = [], on: ConnectionTarget = target): Promise<pg.QueryResult<R>> => onOneClient(on, (client) => run<R>(client, { name, text, values: [...params] }))

  return Object.freeze({
    name,
    text,
    columnNames: Object.freeze(columnTypes.map((c) => c.column)),
    columnTypes,
    parameterTypes,
    query: execute,
    rows: async (params?: readonly unknown[], on?: ConnectionTarget) => (await execute(params, on)).rows,
    first: async (params?: readonly unknown[], on?: ConnectionTarget) => (await execute(params, on)).rows[0],
  })
}
