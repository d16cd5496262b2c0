import { existsSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import type { OnConnectHook } from '../connect/connect-client.ts'

/** An onConnect hook, and the module it came from when it can travel to workers. */
export interface HookRef {
  hook: OnConnectHook
  module?: string
}

/** A module specifier that means the same in every thread: absolute paths become file URLs. */
export function normalizeModule(spec: string): string {
  if (spec.startsWith('file:') || (!spec.startsWith('.') && !isAbsolute(spec))) return spec
  return pathToFileURL(resolve(spec)).href
}

/**
 * A hook that imports `spec` on first use and calls its default export. Module hooks, unlike
 * closures, can be named in a snapshot and loaded again inside a worker.
 */
export function loadHookModule(spec: string): OnConnectHook {
  const url = normalizeModule(spec)
  assertHookFileExists(spec, url)
  let loaded: Promise<OnConnectHook> | undefined
  return async (client, info) => {
    loaded ??= import(url).then((m: { default?: unknown }) => {
      if (typeof m.default !== 'function') {
        throw new PgcrewError('INVALID_OPTION', `onConnect module ${spec} must export a default function (client, info) => void`)
      }
      return m.default as OnConnectHook
    })
    await (
      await loaded
    )(client, info)
  }
}

/**
 * A hook module that is a file must exist when the Database is made: imported lazily, a wrong path
 * would surface only at the first query, as a connection failure that never names the file. (A
 * package name is left to the import: it resolves from the importing module, not from here.)
 */
function assertHookFileExists(spec: string, url: string): void {
  if (!url.startsWith('file:')) return
  const file = fileURLToPath(url)
  if (existsSync(file)) return
  const against = spec.startsWith('file:') || isAbsolute(spec) ? '' : ` (resolved against the current directory ${process.cwd()})`
  throw new PgcrewError('HOOK_NOT_FOUND', `onConnect module ${spec} not found: ${file} does not exist${against}; give a path relative to the current directory, an absolute path or a file URL`, {
    details: { module: spec, file, cwd: process.cwd() },
  })
}
