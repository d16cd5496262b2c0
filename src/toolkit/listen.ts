import type pg from 'pg'
import { PgcrewError } from '../errors/pgcrew-error.ts'
import { quoteIdent } from './quote.ts'
import { heldClient, holdConnection, onOneClient, run, type ConnectionTarget, type HeldConnection } from './toolkit-target.ts'

/** One NOTIFY as received: the channel name exactly as sent, the payload ('' when none), the sender's pid. */
export interface Notification {
  readonly kind: 'notification'
  readonly channel: string
  readonly payload: string
  readonly pid: number
}

/** Yielded when `idleMillis` passed without a notification (only with that option). */
export interface IdleTick {
  readonly kind: 'idle'
}

/** What the listener reports after it lost its connection and listens again. */
export interface ReconnectInfo {
  /** Failed attempts before this success. */
  readonly attempts: number
  /** How long the listener was deaf: notifications sent in this window were lost. */
  readonly downMillis: number
  readonly cause: unknown
}

/** Options of {@link listen}; every field is optional. */
export interface ListenOptions {
  /** Yield `{ kind: 'idle' }` after this long without a notification. Default: never. */
  idleMillis?: number
  /** First delay before reconnecting; doubles per failure up to `maxReconnectDelayMillis`. Default 100. */
  reconnectDelayMillis?: number
  /** Default 5000. */
  maxReconnectDelayMillis?: number
  /** Called after each successful reconnect. Default: a process warning saying notifications may be lost. */
  onReconnect?: (info: ReconnectInfo) => void
}

const DEFAULTS = Object.freeze({ reconnectDelayMillis: 100, maxReconnectDelayMillis: 5000 })

function defaultOnReconnect(info: ReconnectInfo): void {
  process.emitWarning(`LISTEN connection was lost and is listening again after ${info.attempts + 1} attempt(s); notifications sent during the ${info.downMillis} ms it was down were lost`, {
    code: 'PGCREW_LISTEN_RECONNECTED',
  })
}

function checkChannel(channel: string): string {
  quoteIdent(channel)
  if (Buffer.byteLength(channel) > 63) throw new PgcrewError('INVALID_OPTION', `channel "${channel}" is longer than 63 bytes; PostgreSQL would truncate it and notify() would not reach it`)
  return channel
}

/**
 * LISTENs on a connection of its own and yields notifications; after the connection drops
 * (server restart, pg_terminate_backend) it reconnects with backoff and LISTENs again. Notifications
 * sent while it is down are lost — PostgreSQL does not queue them for a session that is gone.
 * Channel names are exact (quoted): `listen(db, ['Jobs'])` hears `notify(db, 'Jobs', …)`, not `'jobs'`.
 *
 * @example
 * await using jobs = await listen(db, ['jobs'])
 * for await (const n of jobs) console.log(n.channel, n.payload)
 */
export class Listener<T = Notification> implements AsyncIterable<T>, AsyncDisposable {
  readonly channels: readonly string[]
  readonly #target: ConnectionTarget
  readonly #opts: Required<Omit<ListenOptions, 'idleMillis'>> & { idleMillis: number | undefined }
  #held: HeldConnection | undefined
  #detach: (() => void) | undefined
  #pid = 0
  #queue: T[] = []
  /** Every pending next() — callers may overlap, and each must settle. */
  readonly #waiters = new Set<() => void>()
  #failure: unknown
  #closed = false
  #reconnects = 0

  /** @internal use {@link listen} */
  constructor(target: ConnectionTarget, channels: readonly string[], options: ListenOptions) {
    this.#target = target
    this.channels = Object.freeze([...new Set(channels.map(checkChannel))])
    this.#opts = {
      idleMillis: options.idleMillis,
      reconnectDelayMillis: options.reconnectDelayMillis ?? DEFAULTS.reconnectDelayMillis,
      maxReconnectDelayMillis: options.maxReconnectDelayMillis ?? DEFAULTS.maxReconnectDelayMillis,
      onReconnect: options.onReconnect ?? defaultOnReconnect,
    }
  }

  /** The backend pid of the listening connection now (changes after a reconnect). */
  get pid(): number {
    return this.#pid
  }

  /** How many times the listener has reconnected. */
  get reconnects(): number {
    return this.#reconnects
  }

  /** @internal */
  async start(): Promise<void> {
    const held = await holdConnection(this.#target)
    const client = held.client
    if (client.getTransactionStatus?.() !== 'I') {
      await held.release()
      throw new PgcrewError('LISTEN_NEEDS_OWN_CONNECTION', 'listen() needs a connection of its own, but was called inside a transaction; call it outside db.transaction()')
    }
    let lost = false
    const detach = (): void => {
      client.removeListener('notification', onNotification)
      client.removeListener('error', onLost)
      client.removeListener('end', onEnd)
    }
    const onLost = (cause: unknown): void => {
      if (lost) return
      lost = true
      detach()
      void held.release(true)
      if (this.#closed) return
      // A pg client you passed in cannot be replaced: end the iteration with the error instead of
      // retrying the same dead socket forever. A Database (or pool) lends a fresh connection.
      if (heldClient(this.#target)) {
        this.#failure = new PgcrewError('LISTEN_CONNECTION_LOST', 'the connection this listener was given has ended; listen on a Database to get automatic reconnects', { cause })
        void this.close()
        return
      }
      void this.#reconnect(cause)
    }
    const onNotification = (msg: pg.Notification): void => {
      this.#push({ kind: 'notification', channel: msg.channel, payload: msg.payload ?? '', pid: msg.processId } as T)
    }
    client.on('notification', onNotification)
    client.on('error', onLost)
    const onEnd = (): void => onLost(new Error('the LISTEN connection ended'))
    client.on('end', onEnd)
    try {
      for (const channel of this.channels) await run(client, `LISTEN ${quoteIdent(channel)}`)
      this.#pid = (await run<{ pid: number }>(client, 'SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    } catch (error) {
      lost = true
      detach()
      await held.release(true)
      throw error
    }
    if (this.#closed) {
      // close() ran while this (re)connect was under way.
      detach()
      await run(client, 'UNLISTEN *').then(
        () => held.release(),
        () => held.release(true),
      )
      return
    }
    this.#held = held
    this.#detach = detach
  }

  async #reconnect(cause: unknown): Promise<void> {
    const lostAt = Date.now()
    let delay = this.#opts.reconnectDelayMillis
    for (let attempts = 0; !this.#closed; attempts++) {
      await new Promise((r) => setTimeout(r, delay / 2 + (Math.random() * delay) / 2))
      if (this.#closed) return
      try {
        await this.start()
        this.#reconnects++
        this.#opts.onReconnect({ attempts, downMillis: Date.now() - lostAt, cause })
        return
      } catch (error) {
        // The Database behind this listener was closed: nothing will ever lend a connection again.
        if (error instanceof PgcrewError && error.code === 'CLOSED') {
          this.#failure = new PgcrewError('LISTEN_CONNECTION_LOST', 'the Database this listener used was closed while it was reconnecting', { cause: error })
          await this.close()
          return
        }
        delay = Math.min(delay * 2, this.#opts.maxReconnectDelayMillis)
      }
    }
  }

  #push(item: T): void {
    this.#queue.push(item)
    this.#wake()
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake()
  }

  /** Waits for the next notification (or idle tick); undefined once closed. */
  async next(): Promise<T | undefined> {
    while (!this.#closed) {
      const item = this.#queue.shift()
      if (item !== undefined) return item
      let timer: NodeJS.Timeout | undefined
      let wake!: () => void
      const idle = await new Promise<boolean>((resolve) => {
        wake = () => resolve(false)
        this.#waiters.add(wake)
        if (this.#opts.idleMillis !== undefined) timer = setTimeout(() => resolve(true), this.#opts.idleMillis)
      })
      clearTimeout(timer)
      this.#waiters.delete(wake)
      if (idle && this.#queue.length === 0 && !this.#closed) return { kind: 'idle' } as T
    }
    if (this.#failure !== undefined) throw this.#failure
    return undefined
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      for (let item = await this.next(); item !== undefined; item = await this.next()) yield item
    } finally {
      await this.close()
    }
  }

  /**
   * UNLISTENs and gives the connection back; pending iterations end. `discard` skips the UNLISTEN
   * and destroys the connection instead (used when the whole Database is closing).
   */
  async close(options: { discard?: boolean } = {}): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#wake()
    const held = this.#held
    this.#held = undefined
    if (!held) return
    this.#detach?.()
    let broken = options.discard === true
    if (!broken)
      await run(held.client, 'UNLISTEN *').catch(() => {
        broken = true
      })
    await held.release(broken)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/** Starts listening (the LISTENs have run when this resolves, so a NOTIFY sent afterwards is heard). */
export async function listen(target: ConnectionTarget, channels: string | readonly string[], options: ListenOptions & { idleMillis: number }): Promise<Listener<Notification | IdleTick>>
export async function listen(target: ConnectionTarget, channels: string | readonly string[], options?: ListenOptions): Promise<Listener<Notification>>
export async function listen(target: ConnectionTarget, channels: string | readonly string[], options: ListenOptions = {}): Promise<Listener<Notification | IdleTick>> {
  const list = typeof channels === 'string' ? [channels] : channels
  if (list.length === 0) throw new PgcrewError('INVALID_OPTION', 'listen() needs at least one channel')
  const listener = new Listener<Notification | IdleTick>(target, list, options)
  await listener.start()
  return listener
}

/**
 * Sends a notification with `pg_notify`, which takes the channel name verbatim — the same exact name
 * `listen` quotes. Inside a transaction it is delivered on COMMIT.
 *
 * @example await notify(db, 'Jobs', JSON.stringify({ id: 7 }))
 */
export async function notify(target: ConnectionTarget, channel: string, payload = ''): Promise<void> {
  checkChannel(channel)
  await onOneClient(target, (client) => run(client, 'SELECT pg_notify($1, $2)', [channel, payload]))
}
