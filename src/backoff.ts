/** Exponential backoff with jitter: about `first` ms before the first retry, doubling each time. */
export function backoffMillis(first: number, attempt: number): number {
  const delay = first * 2 ** (attempt - 1)
  return delay / 2 + Math.random() * delay
}
