// The server `pgcrew run` uses when nothing at all is configured: PostgreSQL started by pgcrew, its
// data kept under the project so that a second run resumes (and skips what the first one did).
import { join, relative } from 'node:path'
import { projectRoot } from '../connect/profiles.ts'
import { startTempCluster, type TempCluster, type TempClusterOptions } from './temp-cluster.ts'

/** Where the embedded default keeps its data: `.pgcrew/data` in the project (git-ignored). */
export function embeddedDataDir(cwd = process.cwd()): string {
  return join(projectRoot(cwd), '.pgcrew', 'data')
}

/** A path as someone in `cwd` would type it: relative below `cwd`, else absolute. */
export function shownPath(path: string, cwd = process.cwd()): string {
  const rel = relative(cwd, path)
  return rel && !rel.startsWith('..') && !rel.startsWith('/') ? rel : path
}

/**
 * Start the embedded default server on the project's data directory (created on first use);
 * `fresh` removes what an earlier run left there first.
 *
 * @example await using server = await startEmbeddedDefault({ fresh: false })
 */
export function startEmbeddedDefault(options: { cwd?: string; fresh?: boolean; binaries?: TempClusterOptions['binaries'] } = {}): Promise<TempCluster> {
  return startTempCluster({ dataDir: embeddedDataDir(options.cwd), fresh: options.fresh, binaries: options.binaries })
}
