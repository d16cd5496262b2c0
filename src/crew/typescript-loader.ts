// TypeScript pipelines and workers run out of the box: an installed pgcrew brings tsx and registers
// it in each thread that imports a .ts module (the main thread for a pipeline, each worker for its
// worker module), so `npx pgcrew run pipeline.ts` needs no `node --import tsx`.
import { isMainThread } from 'node:worker_threads'

const TSX_PRELOADED = /(^|\s)--(import|loader|require)[= ]tsx(\s|$)/
const TYPESCRIPT = /\.([mc]?tsx?|jsx)$/i

/** Settles once tsx's loader hooks are registered in this thread: true, or false when tsx is not installed. */
let registering: Promise<boolean> | undefined

/** What to say when `what` is TypeScript and tsx cannot be registered: the same words wherever it happens; `instead` is the way round it. */
export function tsxMissing(what: string, instead: string): string {
  return `${what} is TypeScript but tsx, which pgcrew depends on, cannot be loaded; reinstall pgcrew (npm install) or ${instead}`
}

/** True when `url` (or a path) names a module only tsx can load (TypeScript, JSX). */
export function isTypeScript(url: string): boolean {
  return TYPESCRIPT.test(new URL(url, 'file:///').pathname)
}

/**
 * Register tsx in this thread, once. Loader hooks registered in one thread do not reach worker
 * threads started later on Node 20, which is why each worker calls this itself.
 */
export function registerTypeScript(): Promise<boolean> {
  // Started with `node --import tsx` (development, the tests): the main thread has tsx already, and
  // a second set of hooks would transform every module twice. Workers register theirs as before.
  if (isMainThread && TSX_PRELOADED.test(`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`)) registering ??= Promise.resolve(true)
  registering ??= import('tsx/esm/api').then(
    (api: { register: () => unknown }) => {
      api.register()
      return true
    },
    () => false,
  )
  return registering
}
