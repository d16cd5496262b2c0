import { createRequire } from 'node:module'
import type pg from 'pg'
import { statementName, type PgcrewClient } from '../connect/connect-client.ts'

// node-postgres' own value serialisation, so parameters encode exactly as in client.query.
const require = createRequire(import.meta.url)
const { prepareValue } = require('pg/lib/utils.js') as { prepareValue(value: unknown): unknown }
// node-postgres' own result builder, so rows parse exactly as in client.query (the client's type parsers included).
const Result = require('pg/lib/result.js') as new (rowMode?: string, types?: unknown) => PgResult

interface PgResult extends pg.QueryResult {
  addFields(fields: unknown[]): void
  parseRow(fields: unknown[]): unknown
  addRow(row: unknown): void
  addCommandComplete(msg: { text: string }): void
}

type WireConnection = {
  stream: { cork?: () => void; uncork?: () => void }
  parsedStatements: Record<string, string>
  parse(msg: { name: string; text: string; types: number[] }): void
  close(msg: { type: 'S' | 'P'; name: string }): void
  bind(msg: { statement: string; values: unknown[]; valueMapper: (v: unknown) => unknown }): void
  describe(msg: { type: 'P'; name: string }): void
  execute(msg: { portal: string }): void
  sync(): void
}

/** What the first statement of the transaction reported. */
export interface FirstResult {
  rowCount: number | null
}

/** What `commitThenBegin` reported: the COMMIT's answer ("COMMIT", or "ROLLBACK" for a failed transaction), then the next transaction's. */
export interface CommitThenBegin {
  /** Settles with the COMMIT: resolved with its command tag, or rejected with the error COMMIT got. */
  readonly commit: Promise<string>
  /** The next transaction's first statement; rejected with `NOT_BEGUN` when the COMMIT failed (nothing after it ran). */
  readonly begin: Promise<FirstResult>
}

/** The reason `CommitThenBegin.begin` rejects when its COMMIT failed: the server skipped the rest. */
export const NOT_BEGUN = Symbol('not begun: the COMMIT before it failed')

/** How a BeginWith goes out. */
interface BeginWithOptions {
  /** The statement's name as a named prepared statement; '' sends it unnamed. */
  name: string
  /** COMMIT the open transaction first, in the same write (commitThenBegin). */
  commitFirst?: boolean
  /** Collect the statement's rows (beginWithRows); otherwise only its row count. */
  rows?: boolean
  /** Told when the statement fails (the client renames a stale named statement). */
  onError?: (error: unknown) => void
}

/**
 * A node-postgres "submittable" that opens a transaction and runs its first statement in one round
 * trip: BEGIN and the statement go out as one write (extended protocol, one Sync). A BEGIN in the
 * extended protocol opens a transaction block that lasts past the Sync, so what follows is inside
 * it, exactly as after a separate BEGIN. The statement must not return rows (an INSERT or UPDATE).
 */
export class BeginWith {
  readonly result: Promise<FirstResult>
  /** Set when a COMMIT of the transaction before goes first (see commitThenBegin). */
  readonly commit: Promise<string> | undefined
  #commitSettle: { resolve: (tag: string) => void; reject: (e: unknown) => void } | undefined
  #completes = 0
  readonly #begin: string
  readonly #text: string
  readonly #values: unknown[]
  readonly #name: string
  #rowCount: number | null = null
  #resolve!: (r: FirstResult) => void
  #reject!: (e: unknown) => void
  #connection: WireConnection | undefined
  /**
   * With `rows`: the statement's full result, built by pg's own Result. Named `_result` because
   * pg's client gives a submittable's `_result` its type parsers when it queues it.
   */
  readonly _result: PgResult | undefined
  /** A row that its type parser refused: reported when the statement's round trip ends. */
  #rowError: unknown
  /** The statement's values could not be serialised: nothing of it ran, whatever the server answers. */
  #failed: unknown

  readonly #onError: ((error: unknown) => void) | undefined

  constructor(begin: string, text: string, values: unknown[], how: BeginWithOptions) {
    if (how.rows) this._result = new Result()
    this.#onError = how.onError
    if (how.commitFirst) {
      this.commit = new Promise((resolve, reject) => (this.#commitSettle = { resolve, reject }))
      this.commit.catch(() => {})
    }
    this.#begin = begin
    this.#text = text
    this.#values = values
    this.#name = how.name
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }

  submit(connection: WireConnection): void {
    this.#connection = connection
    connection.stream.cork?.()
    try {
      if (this.#commitSettle) {
        // Executed, a COMMIT commits (PostgreSQL ends a transaction-control statement at its Execute,
        // not at the Sync); if it fails, the server skips what follows up to the Sync.
        connection.parse({ name: '', text: 'COMMIT', types: [] })
        connection.bind({ statement: '', values: [], valueMapper: prepareValue })
        connection.execute({ portal: '' })
      }
      connection.parse({ name: '', text: this.#begin, types: [] })
      connection.bind({ statement: '', values: [], valueMapper: prepareValue })
      connection.execute({ portal: '' })
      if (this.#name === '' || connection.parsedStatements[this.#name] === undefined) {
        // Not known to be parsed here, yet it may exist: a Parse that succeeded before a Bind or
        // Execute failed (a lock timeout, a NUL byte in a key) is only recorded at ReadyForQuery, which
        // an error skips, and ROLLBACK does not drop it. Closing a statement that does not exist is no
        // error, so the Parse cannot meet "already exists" (42P05) on every later claim of the session.
        if (this.#name !== '') connection.close({ type: 'S', name: this.#name })
        connection.parse({ name: this.#name, text: this.#text, types: [] })
      }
      try {
        connection.bind({ statement: this.#name, values: this.#values, valueMapper: prepareValue })
      } catch (error) {
        // A value pg cannot serialise (a BigInt inside JSON, a throwing toPostgres): no Execute, but
        // the Sync still goes out, or the server never answers and the connection hangs on this
        // query. The error goes to the caller; what was sent (a BEGIN) is rolled back by its lane.
        this.#failed = error
        connection.sync()
        return
      }
      if (this._result) connection.describe({ type: 'P', name: '' })
      connection.execute({ portal: '' })
      connection.sync()
    } finally {
      connection.stream.uncork?.()
    }
  }

  handleCommandComplete(msg: { text: string }): void {
    const index = this.#completes++
    if (this.#commitSettle && index === 0) return this.#commitSettle.resolve(msg.text)
    // BEGIN reports "BEGIN"; the statement "INSERT 0 1", "UPDATE 3"…: the last number is its row count.
    if (this._result) {
      if (index === (this.#commitSettle ? 2 : 1)) this._result.addCommandComplete(msg)
      return
    }
    const count = /(\d+)$/.exec(msg.text)
    this.#rowCount = count ? Number(count[1]) : null
  }

  // pg hands an error to the active query and then forgets it (no handleReadyForQuery follows); the
  // Sync already sent brings the connection back, in a failed transaction the caller rolls back.
  handleError(error: unknown): void {
    // The server has no such statement (DISCARD ALL behind our back): parse it afresh next time.
    if (this.#name !== '' && (error as { code?: string }).code === '26000') delete this.#connection?.parsedStatements[this.#name]
    this.#onError?.(error)
    if (this.#commitSettle && this.#completes === 0) {
      // The COMMIT failed: nothing after it ran (no transaction is open).
      this.#commitSettle.reject(error)
      return this.#reject(NOT_BEGUN)
    }
    this.#reject(error)
  }

  handleReadyForQuery(): void {
    // Not bound: the Parse may or may not have run; left unrecorded, the next use closes and parses it afresh.
    if (this.#failed !== undefined) return this.#reject(this.#failed)
    // Both parsed: the named statement is this connection's from now on (pg skips its Parse next time).
    if (this.#name !== '') this.#connection!.parsedStatements[this.#name] = this.#text
    if (this.#rowError !== undefined) return this.#reject(this.#rowError)
    this.#resolve(this._result ?? { rowCount: this.#rowCount })
  }

  handleRowDescription(msg: { fields: unknown[] }): void {
    this._result?.addFields(msg.fields)
  }

  handleDataRow(msg: { fields: unknown[] }): void {
    if (!this._result || this.#rowError !== undefined) return
    try {
      this._result.addRow(this._result.parseRow(msg.fields))
    } catch (error) {
      this.#rowError = error
    }
  }
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

/** Send BEGIN and `text` in one round trip on `client`; resolves with the statement's row count. */
export function beginWith(client: pg.ClientBase, begin: string, text: string, values: unknown[]): Promise<FirstResult> {
  const submittable = new BeginWith(begin, text, values, { name: namedFor(client, text) })
  client.query(submittable as never)
  return submittable.result
}

/** The pipeline's statements (the ledger claim): named by their text when the client prepares statements. */
const namedFor = (client: pg.ClientBase, text: string): string => ((client as { preparesStatements?: boolean }).preparesStatements === true ? statementName(text) : '')

/**
 * COMMIT the open transaction on `client` and open the next with its first statement, in one round
 * trip (one write, one Sync): the pipeline's lanes save a round trip per task so.
 */
export function commitThenBegin(client: pg.ClientBase, begin: string, text: string, values: unknown[]): CommitThenBegin {
  const submittable = new BeginWith(begin, text, values, { name: namedFor(client, text), commitFirst: true })
  client.query(submittable as never)
  return { commit: submittable.commit!, begin: submittable.result }
}

/**
 * BEGIN and a statement that may return rows, in one round trip: what `client.query(text, values)`
 * answers, with the BEGIN in front of it. A transaction's first statement goes out so (Transaction).
 */
export function beginWithRows(client: PgcrewClient, begin: string, text: string, values: unknown[]): Promise<pg.QueryResult> {
  // Named as the client names it (its cap on named statements, a fresh name for a stale one).
  const submittable = new BeginWith(begin, text, values, { name: client.statementNameFor(text), rows: true, onError: (error) => client.statementFailed(text, error) })
  const result = submittable.result as unknown as Promise<pg.QueryResult>
  client.beginSent(result)
  client.query(submittable as never)
  return result
}
