// The store's ':memory:': with nothing configured, openStore() starts a real PostgreSQL of its own
// through the temp-cluster helper (a throwaway one, removed when the store closes), or with
// `persist: dir` one that keeps its data in dir, with durable settings, for the next run.
import { resolve } from 'node:path'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { Database } from '../database/database.ts'
import { isConfigured } from '../connect/nothing-configured.ts'
import { startTempCluster, type TempCluster } from '../cluster/temp-cluster.ts'

/** What decides a store's server when no Database is given. */
export interface EmbeddedChoice {
  persist?: string
  profile?: string
  url?: string
  env?: NodeJS.ProcessEnv
}

/**
 * The Database a store without one connects with: `url` or `profile` when given; `persist` → pgcrew's
 * own PostgreSQL on that data directory; anything configured in the environment (PG*, a profile) →
 * that server; nothing at all → a throwaway PostgreSQL of pgcrew's own.
 */
export async function openEmbeddedDatabase(choice: EmbeddedChoice): Promise<{ db: Database; cluster?: TempCluster }> {
  const env = choice.env ?? process.env
  if (choice.persist !== undefined && (typeof choice.persist !== 'string' || choice.persist === '')) {
    throw new PgcrewError('INVALID_OPTION', `openStore() persist takes a directory for the data, not ${JSON.stringify(choice.persist)}`)
  }
  if (choice.persist !== undefined && (choice.url !== undefined || choice.profile !== undefined)) {
    throw new PgcrewError(
      'INVALID_OPTION',
      `openStore(): persist keeps the data of pgcrew's own PostgreSQL; it cannot go with ${choice.url !== undefined ? 'url' : 'profile'}, which names another server`,
    )
  }
  if (choice.persist === undefined && (choice.url !== undefined || choice.profile !== undefined || isConfigured(undefined, env))) {
    const db = new Database({ connectionString: choice.url, profile: choice.profile, env })
    try {
      await db.connect()
    } catch (error) {
      await db.close().catch(() => {})
      throw error
    }
    return { db }
  }
  const cluster = await startTempCluster(choice.persist === undefined ? {} : { dataDir: resolve(choice.persist) })
  try {
    // The cluster's URL says everything; the environment must not add to it (nothing is configured there anyway).
    const db = new Database({ connectionString: cluster.url, env: {} })
    await db.connect()
    return { db, cluster }
  } catch (error) {
    await cluster.stop().catch(() => {})
    throw error
  }
}
