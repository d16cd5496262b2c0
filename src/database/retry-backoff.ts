/**
 * Exponential backoff with jitter: about `first` ms before the first retry, doubling each time, and
 * never above about `cap` ms (the jitter spreads each wait over half to one and a half times it).
 */
export function backoffMillis(first: number, attempt: number, cap = Infinity): number {
  const delay = Math.min(cap, first * 2 ** (attempt - 1))
  return delay / 2 + Math.random() * delay
}
