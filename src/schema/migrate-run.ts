import type pg from 'pg'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { NO_TRANSACTION_HEADER } from './migrate-script.ts'
import type { PreparedStatement } from './migrate-script.ts'
import type { MigrationPlan } from './migrate-plan.ts'
import { inTransaction, sessionQuery } from './migrate-session.ts'
import { readVersion, recordVersion } from './migrate-version-table.ts'
import type { VersionTable } from './migrate-version-table.ts'
import type { Transaction } from '../database/transaction.ts'

/** What the steps of one migration share: its connection, plan, version table and statement count. */
export interface ChainRun {
  client: pg.ClientBase
  plan: MigrationPlan
  vt: VersionTable
  total: number
  /** Statements started so far (for progress events). */
  index: number
  onStatement: (statement: PreparedStatement, index: number, total: number) => void
}

function failureLine(statement: { sql: string; line: number }, error: unknown): number {
  const position = Number((error as { position?: string }).position)
  if (!Number.isInteger(position) || position < 1) return statement.line
  return statement.line + (statement.sql.slice(0, position - 1).match(/\n/g)?.length ?? 0)
}

function failed(statement: PreparedStatement, error: unknown, outcome: string): PgcrewError {
  const line = failureLine(statement, error)
  return new PgcrewError('MIGRATE_FAILED', `${statement.file} line ${line}: ${(error as Error).message}; ${outcome}`, {
    cause: error,
    details: { file: statement.file, line, sqlstate: (error as { sqlstate?: string }).sqlstate },
  })
}

/**
 * Runs the scripts from `start` in `tx`, each followed by its version, up to the first
 * `--! no-transaction` script or the end; returns the index of the script after the last one run.
 * `at` is the version committed before this transaction (null: no schema), for the error message.
 */
export async function runTransactional(tx: Transaction, run: ChainRun, start: number, at: string | null): Promise<number> {
  const scripts = run.plan.scripts
  let i = start
  for (; i < scripts.length && scripts[i]!.transaction; i++) {
    for (const statement of scripts[i]!.statements) {
      run.onStatement(statement, run.index++, run.total)
      try {
        await tx.query(statement.sql)
      } catch (error) {
        const outcome =
          at === run.plan.from
            ? `everything was rolled back, ${at === null ? 'the database still has no schema' : `the database is still at ${at}`}`
            : `this transaction was rolled back: the database is at ${at}, which the steps before it reached and committed`
        throw failed(statement, error, outcome)
      }
    }
    await recordVersion(tx, run.vt, scripts[i]!.version)
  }
  return i
}

const INVALID_INDEXES = `SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid ORDER BY 1`

async function invalidIndexes(client: pg.ClientBase): Promise<string[]> {
  return (await sessionQuery<{ name: string }>(client, INVALID_INDEXES)).rows.map((r) => r.name)
}

/**
 * Runs one `--! no-transaction` script: each statement on its own, in autocommit (CREATE INDEX
 * CONCURRENTLY refuses even an implicit multi-statement transaction), then records its version in
 * a transaction of its own. On failure the version table is put back to `at` if the script had
 * moved it, and the error says what may be half-done: statements before the failing one stay
 * done, and a failed CONCURRENTLY leaves an INVALID index, named here.
 */
export async function runOutside(run: ChainRun, index: number, at: string): Promise<void> {
  const script = run.plan.scripts[index]!
  const invalidBefore = new Set(await invalidIndexes(run.client))
  for (const [n, statement] of script.statements.entries()) {
    run.onStatement(statement, run.index++, run.total)
    try {
      await sessionQuery(run.client, statement.sql)
    } catch (error) {
      throw failed(statement, error, await halfDone(run, script.file, at, n, invalidBefore))
    }
  }
  await inTransaction(run.client, (tx) => recordVersion(tx, run.vt, script.version))
}

async function halfDone(run: ChainRun, file: string, at: string, done: number, invalidBefore: Set<string>): Promise<string> {
  const facts: string[] = []
  facts.push(done === 0 ? 'none of its statements had run' : `the ${done} statement${done === 1 ? '' : 's'} before this one stay done`)
  // Best effort: after a lost connection these cannot run, and the facts above still hold.
  try {
    const left = (await invalidIndexes(run.client)).filter((name) => !invalidBefore.has(name))
    if (left.length > 0) facts.push(`it left the INVALID index${left.length === 1 ? '' : 'es'} ${left.join(', ')}: DROP INDEX CONCURRENTLY ${left.length === 1 ? 'it' : 'them'} before running again`)
    const claimed = await inTransaction(run.client, async (tx) => {
      const now = await readVersion(tx, run.vt)
      if (now === at) return undefined
      await recordVersion(tx, run.vt, at)
      return now
    })
    if (claimed !== undefined) facts.push(`the script had set the version to ${claimed}; pgcrew put back ${at}`)
  } catch {
    facts.push('pgcrew could not check for INVALID indexes, nor for a version the script recorded itself (the connection failed)')
  }
  return `${file} runs outside a transaction (${NO_TRANSACTION_HEADER}), so ${facts.join('; ')}; the database is at ${at}, which the steps before it reached and committed — make the script safe to run again, and run again`
}
