// The public API as a user gets it: tsc output, reached through package.json's "exports", exports
// every documented name — values at run time, types in the .d.ts — so moving files cannot drop one.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'
import { atEnd } from '../helpers.ts'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

/** Every name src/index.ts exports (values and types), as the README and JSDoc document them. */
const DOCUMENTED = [
  'ActiveSqlTransaction',
  'AdminShutdown',
  'AdvisoryKey',
  'AdvisoryLock',
  'AdvisoryLockOptions',
  'BackendTerminated',
  'BudgetPlan',
  'CannotConnectNow',
  'CantChangeRuntimeParam',
  'CardinalityViolation',
  'CheckViolation',
  'ColumnInfo',
  'ConnectOptions',
  'ConnectionException',
  'ConnectionParams',
  'ConnectionSettings',
  'ConnectionTarget',
  'CopyFormat',
  'CopyFromOptions',
  'CopyTransferResult',
  'CopyTransferTarget',
  'CrashShutdown',
  'Crew',
  'CrewOptions',
  'Cursor',
  'CursorOptions',
  'DATABASE_DEFAULTS',
  'DEFAULT_LEDGER',
  'DataException',
  'Database',
  'DatabaseError',
  'DatabaseOptions',
  'DatabaseSnapshot',
  'DatatypeMismatch',
  'DatetimeFieldOverflow',
  'DeadlockDetected',
  'DependentPrivilegeDescriptorsStillExist',
  'DiskFull',
  'DivisionByZero',
  'DuplicateDatabase',
  'DuplicateObject',
  'DuplicateTable',
  'ExclusionViolation',
  'FeatureNotSupported',
  'ForeignKeyViolation',
  'IdleInTransactionSessionTimeout',
  'IdleTick',
  'InFailedSqlTransaction',
  'InsufficientPrivilege',
  'InsufficientResources',
  'IntegrityConstraintViolation',
  'InternalError',
  'InvalidAuthorizationSpecification',
  'InvalidCatalogName',
  'InvalidCursorName',
  'InvalidDatetimeFormat',
  'InvalidParameterValue',
  'InvalidPassword',
  'InvalidSchemaName',
  'InvalidSqlStatementName',
  'InvalidTextRepresentation',
  'InvalidTransactionState',
  'ListenOptions',
  'Listener',
  'LockNotAvailable',
  'MIGRATE_DEFAULTS',
  'MigrateEvent',
  'MigrateOptions',
  'MigrateResult',
  'NoActiveSqlTransaction',
  'NotNullViolation',
  'Notification',
  'NumericValueOutOfRange',
  'ObjectInUse',
  'ObjectNotInPrerequisiteState',
  'OnConnectHook',
  'OperatorIntervention',
  'OutOfMemory',
  'ParsedConnectionString',
  'PgcrewError',
  'PgcrewErrorCode',
  'PgpassEntry',
  'PgpassMatch',
  'PipelineDefinition',
  'PipelinePlan',
  'PipelineTask',
  'PlanOptions',
  'PlpgsqlError',
  'Pooling',
  'PostgresBinaries',
  'PreparedStatement',
  'Profile',
  'ProfileChoice',
  'ProfileSet',
  'ProgramLimitExceeded',
  'ProgressReporter',
  'ProgressState',
  'QueryCanceled',
  'RaiseException',
  'ReadOnlySqlTransaction',
  'ReadOnlyTransaction',
  'ReconnectInfo',
  'RestrictViolation',
  'RoleChoice',
  'RunOptions',
  'RunSummary',
  'SerializationFailure',
  'ServerErrorFields',
  'SettingValue',
  'Settings',
  'SqlFragment',
  'SqlStatement',
  'SqlSyntaxError',
  'StringDataRightTruncation',
  'SyntaxErrorOrAccessRuleViolation',
  'SystemError',
  'TableName',
  'TaskContext',
  'TaskError',
  'TaskHandler',
  'TempCluster',
  'TempClusterOptions',
  'TooManyConnections',
  'Transaction',
  'TransactionOptions',
  'TransactionRollback',
  'TypeInfo',
  'UndefinedColumn',
  'UndefinedFunction',
  'UndefinedObject',
  'UndefinedTable',
  'UniqueViolation',
  'WorkerContext',
  'WorkerDefinition',
  'advisoryLock',
  'barProgress',
  'chooseProfile',
  'compareVersions',
  'copyFrom',
  'copyTo',
  'copyTransfer',
  'cursor',
  'definePipeline',
  'defineWorker',
  'errorClassFor',
  'findPostgresBinaries',
  'hashKey',
  'initProcess',
  'isPgcrewError',
  'isServerError',
  'isTransientError',
  'isTransientSqlstate',
  'lineProgress',
  'listen',
  'loadPipeline',
  'loadProfiles',
  'lookupPgpass',
  'machineFqdn',
  'mapDatabaseError',
  'maskConnectionString',
  'migrate',
  'migrationLockKey',
  'notify',
  'parseConnectionString',
  'parsePgpassLine',
  'pgpassFileName',
  'planPipeline',
  'prepare',
  'profileFiles',
  'qname',
  'quoteIdent',
  'quoteLiteral',
  'runPipeline',
  'settings',
  'silentProgress',
  'splitStatements',
  'sql',
  'startTempCluster',
  'withAdvisoryLock',
  'withSettings',
]

/** The names a declaration file exports, as the TypeScript checker sees them. */
function declaredExports(file: string): Set<string> {
  const program = ts.createProgram([file], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true, skipLibCheck: true })
  const checker = program.getTypeChecker()
  const source = program.getSourceFile(file)
  assert.ok(source, `${file} is not part of the program`)
  const module = checker.getSymbolAtLocation(source)
  assert.ok(module, `${file} is not a module`)
  return new Set(checker.getExportsOfModule(module).map((s) => s.name))
}

test('the built package exports every documented name: the values at run time, all of them in its types', async () => {
  const out = mkdtempSync(join(root, '.tmp-build-exports-'))
  atEnd(() => rmSync(out, { recursive: true, force: true }))
  await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root })
  // Follow package.json's "exports" into this build, as `import 'pgcrew'` would into dist/.
  const entry = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: { '.': { types: string; default: string } } }).exports['.']
  const inBuild = (path: string): string => join(out, path.replace(/^\.\/dist\//, ''))

  const built = (await import(pathToFileURL(inBuild(entry.default)).href)) as Record<string, unknown>
  const source = (await import('../../src/index.ts')) as Record<string, unknown>
  const values = DOCUMENTED.filter((name) => name in source)
  assert.ok(values.length > 100, `the barrel exports only ${values.length} documented values at run time`)
  assert.deepEqual(
    values.filter((name) => built[name] === undefined),
    [],
    'documented values missing from the built package',
  )
  assert.deepEqual(Object.keys(built).sort(), Object.keys(source).sort(), 'the built package and src/index.ts export different values')

  const types = declaredExports(inBuild(entry.types))
  assert.deepEqual(
    DOCUMENTED.filter((name) => !types.has(name)),
    [],
    'documented names missing from the built .d.ts',
  )
})
