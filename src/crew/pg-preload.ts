// Loads pg in a crew worker thread before anything else does, without its Cloudflare probe's cost.
//
// pg asks at import time whether it runs in a Cloudflare Worker: `navigator.userAgent`, and where
// there is no `navigator` (Node 20) it builds a `new Response(...)`, whose lazy global loads undici:
// about 40–60 ms of CPU in every thread a crew starts. Node 21+ has `navigator` and skips that. While
// pg loads, this thread has a navigator as Node 21 has one; it is removed again at once, so the user's
// worker module sees the globals as Node made them. pg is CommonJS: `import pg` later finds it loaded.
import { createRequire } from 'node:module'

const g = globalThis as { navigator?: unknown }
const lent = !('navigator' in globalThis)
if (lent) g.navigator = { userAgent: `Node.js/${process.versions.node.split('.')[0]}` }
try {
  createRequire(import.meta.url)('pg')
} finally {
  if (lent) delete g.navigator
}
