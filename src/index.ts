// The public API of pgcrew: every capability is one hop from here.

// Connecting
export { Database, type ConnectOptions } from './database.ts'
export type { RoleChoice } from './target.ts'
export { DEFAULTS as DATABASE_DEFAULTS, type DatabaseOptions, type Pooling } from './options.ts'
export type { ConnectionParams, ConnectionSettings } from './connection-params.ts'
export { parseConnectionString, maskConnectionString, type ParsedConnectionString } from './connection-string.ts'
export { loadProfiles, chooseProfile, machineFqdn, profileFiles, type Profile, type ProfileSet, type ProfileChoice } from './profiles.ts'
export { lookupPgpass, parsePgpassLine, pgpassFileName, type PgpassEntry, type PgpassMatch } from './pgpass.ts'
export type { OnConnectHook } from './pg-client.ts'
export type { DatabaseSnapshot } from './snapshot.ts'

// Transactions and errors
export { Transaction, type TransactionOptions } from './transaction.ts'
export { PgcrewError, isPgcrewError, type PgcrewErrorCode } from './errors.ts'
export * from './database-error.ts'
export { quoteIdent, quoteLiteral, qname, sql, SqlFragment } from './quote.ts'

// The toolkit (also methods of Database: db.settings, db.prepare, db.cursor, db.listen, …)
export { settings, withSettings, type Settings, type SettingValue } from './settings.ts'
export { prepare, type PreparedStatement, type ColumnInfo, type TypeInfo } from './prepared.ts'
export { cursor, Cursor, type CursorOptions } from './cursor.ts'
export { listen, notify, Listener, type ListenOptions, type Notification, type IdleTick, type ReconnectInfo } from './listen.ts'
export { advisoryLock, withAdvisoryLock, hashKey, AdvisoryLock, type AdvisoryKey, type AdvisoryLockOptions } from './advisory-lock.ts'
export { copyFrom, copyTo, type CopyFormat, type CopyFromOptions, type TableName } from './copy.ts'
export { copyTransfer, type CopyTransferTarget, type CopyTransferResult } from './copy-transfer.ts'
export type { ConnectionTarget } from './connection-target.ts'

// Crews and pipelines
export { Crew, type CrewOptions } from './crew.ts'
export { defineWorker, initProcess, type WorkerContext, type TaskContext, type TaskHandler, type WorkerDefinition } from './define-worker.ts'
export { TaskError } from './crew-protocol.ts'
export { definePipeline, runPipeline, loadPipeline, type PipelineDefinition, type PipelineTask, type RunOptions, type RunSummary } from './pipeline.ts'
export type { BudgetPlan, BudgetNumbers } from './budget.ts'
export { DEFAULT_LEDGER } from './ledger.ts'
export { barProgress, lineProgress, silentProgress, type ProgressReporter, type ProgressState } from './progress.ts'

// Schema lifecycle
export { migrate, migrationLockKey, MIGRATE_DEFAULTS, type MigrateOptions, type MigrateResult, type MigrateEvent } from './migrate.ts'
export { splitStatements, type SqlStatement } from './split-statements.ts'
export { compareVersions } from './migrate-versions.ts'
export type { TemplateDialect, TemplateVariables } from './migrate-template.ts'

// A real PostgreSQL for tests and demos
export { startTempCluster, type TempCluster, type TempClusterOptions } from './temp-cluster.ts'
export { startEmbeddedDefault, embeddedDataDir, projectRoot } from './embedded-default.ts'
export { findPostgresBinaries, type PostgresBinaries } from './postgres-binaries.ts'
