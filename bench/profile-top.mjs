// Top self-time functions of a .cpuprofile (node --cpu-prof): node bench/profile-top.mjs FILE [N]
import { readFileSync } from 'node:fs'
const [file, n = '25'] = process.argv.slice(2)
const p = JSON.parse(readFileSync(file, 'utf8'))
const self = new Map()
const dt = p.timeDeltas
const byId = new Map(p.nodes.map((x) => [x.id, x]))
const hits = new Map()
for (let i = 0; i < p.samples.length; i++) hits.set(p.samples[i], (hits.get(p.samples[i]) ?? 0) + (dt[i] ?? 0))
let total = 0
for (const [id, us] of hits) {
  const node = byId.get(id)
  const cf = node.callFrame
  const name = `${cf.functionName || '(anon)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`
  self.set(name, (self.get(name) ?? 0) + us)
  total += us
}
const idle = [...self].filter(([k]) => k.startsWith('(idle)') || k.startsWith('(program)')).reduce((a, [, v]) => a + v, 0)
console.log(`${file.split('/').pop()}: ${(total / 1e6).toFixed(2)} s sampled, idle ${((idle / total) * 100).toFixed(0)}%`)
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${((v / (total - idle)) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
