import type pg from 'pg'
import { DatabaseError, mapDatabaseError } from '../errors/database-error.ts'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { backoffMillis } from '../database/retry-backoff.ts'
import { Transaction } from '../database/transaction.ts'

// A migration runs on ONE connection: a chain with a `--! no-transaction` step is several
// transactions with autocommit statements between them, and the advisory lock that keeps other
// runners out has to stay held across all of them — a session-level lock, which only that session
// can hold and release. (db.transaction would take a new connection for every transaction.)

/** One statement on the migration's connection, with the error mapped like every other query. */
export async function sessionQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.ClientBase, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(sql, params)
  } catch (error) {
    throw mapDatabaseError(error)
  }
}

/**
 * Takes the session-level advisory lock `key`, trying for at most `maxWaitMillis`; false when
 * another session held it all that time. It polls with pg_try_advisory_lock instead of blocking in
 * pg_advisory_lock: a blocked waiter keeps its statement's snapshot, and CREATE INDEX CONCURRENTLY
 * in the migration holding the lock waits for every older snapshot to end — a deadlock. Between
 * tries a waiter holds nothing.
 */
export async function lockSession(client: pg.ClientBase, key: bigint, maxWaitMillis: number): Promise<boolean> {
  const deadline = performance.now() + maxWaitMillis
  for (let attempt = 1; ; attempt++) {
    const { rows } = await sessionQuery<{ ok: boolean }>(client, 'SELECT pg_try_advisory_lock($1::bigint) AS ok', [key.toString()])
    if (rows[0]!.ok) return true
    const left = deadline - performance.now()
    if (left <= 0) return false
    await new Promise((resolve) => setTimeout(resolve, Math.min(left, backoffMillis(20, Math.min(attempt, 5)))))
  }
}

/**
 * Releases the lock. Should that fail, the connection must not go back to the pool still holding
 * it: the pool drops a connection whose work failed with anything but a plain server error, so
 * such an error is thrown unless `failure` (what the migration failed with) is one already.
 */
export async function unlockSession(client: pg.ClientBase, key: bigint, failure: unknown): Promise<void> {
  try {
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()])
  } catch (error) {
    if (failure !== undefined && !(failure instanceof DatabaseError)) return
    const after = failure === undefined ? '' : ` after ${(failure as Error).message}`
    throw new PgcrewError('MIGRATE_UNLOCK', `could not release the migration lock${after}: ${(error as Error).message}; the connection is closed, which releases it`, { cause: failure ?? error })
  }
}

/**
 * Runs `fn` in a READ COMMITTED transaction on `client`: COMMIT on success, ROLLBACK on error.
 * A COMMIT that the server answers with ROLLBACK (an error was caught and ignored) is an error.
 */
export async function inTransaction<T>(client: pg.ClientBase, fn: (tx: Transaction) => Promise<T>, options: { readOnly?: boolean } = {}): Promise<T> {
  await sessionQuery(client, `BEGIN ISOLATION LEVEL READ COMMITTED${options.readOnly ? ' READ ONLY' : ''}`)
  const tx = new Transaction(client)
  try {
    const result = await fn(tx)
    tx.finish()
    const commit = await sessionQuery(client, 'COMMIT')
    if (commit.command === 'ROLLBACK') {
      throw new PgcrewError('MIGRATE_FAILED', 'PostgreSQL rolled the migration transaction back at COMMIT: an error inside it was caught and ignored')
    }
    return result
  } catch (error) {
    tx.finish(true)
    if (client.getTransactionStatus?.() !== 'I') await client.query('ROLLBACK').catch(() => {})
    throw error
  }
}
