#!/usr/bin/env node
// The `pgcrew` executable: wires the process to main() and owns the exit. Logic lives in src/cli/.
import { getEventListeners } from 'node:events'
import { main } from './cli/cli-main.ts'

const controller = new AbortController()
let signalled = false
for (const name of ['SIGINT', 'SIGTERM'] as const) {
  process.on(name, () => {
    // Nobody listening (a short command), or a second Ctrl-C: stop now, as a plain process would.
    if (signalled || getEventListeners(controller.signal, 'abort').length === 0) process.exit(name === 'SIGINT' ? 130 : 143)
    signalled = true
    controller.abort()
  })
}

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  isTTY: process.stdout.isTTY === true,
  signal: controller.signal,
})
process.exit(code)
