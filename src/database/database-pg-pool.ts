import pg from 'pg'
import { clientConfig, PgcrewClient, type ClientSpec } from '../connect/connect-client.ts'

/** Options of {@link pgPoolFor}; `max` is required because it is counted in a connection budget. */
export interface PgPoolOptions {
  /** The most connections the pool opens. */
  max: number
  /** `application_name` of its sessions (default: the Database's). */
  applicationName?: string
}

/**
 * A plain `pg.Pool` on a spec (server, role, password lookup, onConnect hooks), for a library that
 * takes a pool of its own (a job engine) rather than a Database. Statements are not turned into
 * named prepared statements: such a library names its own.
 */
export function pgPoolFor(spec: ClientSpec, options: PgPoolOptions): pg.Pool {
  const params = options.applicationName === undefined ? spec.params : { ...spec.params, applicationName: options.applicationName }
  const { hooks } = spec
  const Client = class extends PgcrewClient {
    constructor(config: pg.ClientConfig) {
      super(config, hooks, params, false)
    }
  }
  const pool = new pg.Pool({ ...clientConfig({ ...spec, params }), Client: Client as never, max: options.max })
  // An idle connection the server ended emits here; the pool has already dropped it.
  pool.on('error', () => {})
  return pool
}
