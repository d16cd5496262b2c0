import type { Database } from '../database/database.ts'

/** Connect as `--as` asks: the profile's admin, its user (read-only sessions), or a named role. */
export async function connectAs(db: Database, as: string | undefined): Promise<void> {
  if (as === undefined) await db.connect()
  else if (as === 'admin') await db.becomeAdmin()
  else if (as === 'user') await db.becomeUser()
  else await db.become(as)
}
