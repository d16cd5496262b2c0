// "Did you mean" for commands, flags and option keys.

/** The closest name within two edits (or sharing a prefix), for "did you mean". */
export function closest(word: string, candidates: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, i) => i)
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!
      row[0] = i
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j]!
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
        prev = cur
      }
    }
    return row[b.length]!
  }
  let best: { name: string; d: number } | undefined
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 2 ? 0 : distance(word, c)
    if (d <= 2 && (!best || d < best.d)) best = { name: c, d }
  }
  return best?.name
}
