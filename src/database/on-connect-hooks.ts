import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
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
