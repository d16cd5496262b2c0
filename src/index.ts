// The public API of pgcrew: every capability is one hop from here.

// Connecting
export { Database, type ConnectOptions } from './database/database.ts'
export type { RoleChoice } from './connect/connect-target.ts'
export { DEFAULTS as DATABASE_DEFAULTS, type DatabaseOptions, type Pooling } from './connect/connect-options.ts'
export type { ConnectionParams, ConnectionSettings } from './connect/connection-params.ts'
export { parseConnectionString, maskConnectionString, type ParsedConnectionString } from './connect/connection-string.ts'
export { loadProfiles, chooseProfile, machineFqdn, profileFiles, projectRoot, type Profile, type ProfileSet, type ProfileChoice } from './connect/profiles.ts'
export { lookupPgpass, parsePgpassLine, pgpassFileName, type PgpassEntry, type PgpassMatch } from './connect/pgpass.ts'
export { lookupService, listServices, serviceFiles, type ServiceEntry, type ServiceFiles, type ServiceSummary } from './connect/service-file.ts'
export { isThisMachine } from './connect/local-socket.ts'
export type { OnConnectHook } from './connect/connect-client.ts'
export type { DatabaseSnapshot } from './database/database-snapshot.ts'
export type { PgPoolOptions } from './database/database-pg-pool.ts'

// Transactions and errors
export { Transaction, type TransactionOptions } from './database/transaction.ts'
export { PgcrewError, isPgcrewError, type PgcrewErrorCode } from './errors/pgcrew-error.ts'
export * from './errors/database-error.ts'
export { quoteIdent, quoteLiteral, qname, sql, SqlFragment } from './toolkit/quote.ts'

// The toolkit (also methods of Database: db.settings, db.prepare, db.cursor, db.listen, …)
export { settings, withSettings, type Settings, type SettingValue } from './toolkit/settings.ts'
export { prepare, type PreparedStatement, type ColumnInfo, type TypeInfo } from './toolkit/prepared.ts'
export { cursor, Cursor, type CursorOptions } from './toolkit/cursor.ts'
export { listen, notify, Listener, type ListenOptions, type Notification, type IdleTick, type ReconnectInfo } from './toolkit/listen.ts'
export { advisoryLock, withAdvisoryLock, hashKey, AdvisoryLock, type AdvisoryKey, type AdvisoryLockOptions } from './toolkit/advisory-lock.ts'
export { copyFrom, copyTo, type CopyFormat, type CopyFromOptions, type TableName } from './toolkit/copy.ts'
export { copyTransfer, type CopyTransferTarget, type CopyTransferResult } from './toolkit/copy-transfer.ts'
export type { ConnectionTarget } from './toolkit/toolkit-target.ts'

// Crews and pipelines
export { Crew, type CrewOptions } from './crew/crew.ts'
export { defineWorker, initProcess, type WorkerContext, type TaskContext, type TaskHandler, type WorkerDefinition } from './crew/define-worker.ts'
export { TaskError } from './crew/crew-protocol.ts'
export { definePipeline, runPipeline, loadPipeline, type PipelineDefinition, type PipelineTask, type RunOptions, type RunSummary } from './pipeline/pipeline.ts'
export type { RunObserver, RunObserved, LiveRun } from './pipeline/pipeline.ts'
export { planPipeline, type PipelinePlan, type PlanOptions } from './pipeline/pipeline-plan.ts'
export type { BudgetPlan, BudgetNumbers } from './crew/crew-budget.ts'
export { DEFAULT_LEDGER } from './pipeline/pipeline-ledger.ts'
export { barProgress, lineProgress, silentProgress, type ProgressReporter, type ProgressState } from './pipeline/pipeline-progress.ts'

// Several machines (graphile-worker 0.17; tasks travel as JSON)
export { runDistributed, workPipeline, type WorkSummary } from './distributed/distributed-work.ts'
export { DISTRIBUTED_DEFAULTS, type DistributedOptions, type DistributedEvent, type DistributedProgress } from './distributed/distributed-options.ts'
export type { EnqueueSummary } from './distributed/distributed-enqueue.ts'

// Schema lifecycle
export { migrate, migrationLockKey, MIGRATE_DEFAULTS, type MigrateOptions, type MigrateResult, type MigrateEvent } from './schema/migrate.ts'
export { splitStatements, type SqlStatement } from './schema/split-statements.ts'
export { compareVersions } from './schema/migrate-versions.ts'
export type { TemplateDialect, TemplateVariables } from './schema/migrate-template.ts'

// The record store
export { openStore, Store, STORE_DEFAULTS, type StoreOptions, type StoreSession, type Where } from './store/store.ts'
export { StoreTable, type FindOptions } from './store/store-table.ts'
export type { StoreColumn } from './store/store-catalog.ts'
export { SEVERITIES, type Severity } from './store/store-schema.ts'
export type { ConfigEntry, SetConfigOptions } from './store/store-config.ts'
export type { Reading, AddReadingOptions, LatestOptions } from './store/store-readings.ts'
export type { StoreEvent, LogEventOptions, EventsOptions } from './store/store-events.ts'
export type { SessionInfo, SessionMessage } from './store/store-sessions.ts'
export type { TimeInput } from './store/store-values.ts'
export type { FixtureData, LoadFixturesOptions } from './store/store-fixtures.ts'

// Run history: what a pipeline did (pgcrew status | failures | retry | reset | runs | report)
export { HISTORY_DEFAULTS, type HistoryOptions } from './history/run-recorder.ts'
export { listRuns, getRun, runForJson, type ListRunsOptions } from './history/run-list.ts'
export type { RunRecord, RunStatus } from './history/run-record.ts'
export type { SlowTask } from './history/slowest-tasks.ts'
export { pipelineStatus, type PipelineStatus, type RunningRun } from './history/pipeline-status.ts'
export { ledgerCounts, ledgerFailures, type LedgerCountOptions, type LedgerCounts, type LedgerFailureRow } from './history/ledger-queries.ts'
export { retryFailed } from './history/retry-failed.ts'
export { reportData, renderReport, writeReport, type ReportData } from './history/run-report.ts'

// A real PostgreSQL for tests and demos
export { startTempCluster, type TempCluster, type TempClusterOptions } from './cluster/temp-cluster.ts'
export { startEmbeddedDefault, embeddedDataDir } from './cluster/embedded-default.ts'
export { findPostgresBinaries, type PostgresBinaries } from './cluster/postgres-binaries.ts'
