// Imports run one way (ARCHITECTURE.md): errors ← connect ← toolkit ← database ← crew ← pipeline ← cli,
// with schema beside crew/pipeline and cluster on its own. `npm run lint:deps` checks it; a broken
// rule fails with its name.
/** A folder of src/ may import only itself and the folders listed after it. */
const layers = {
  errors: [],
  connect: ['errors'],
  toolkit: ['errors', 'connect'],
  database: ['errors', 'connect', 'toolkit'],
  crew: ['errors', 'connect', 'toolkit', 'database'],
  pipeline: ['errors', 'connect', 'toolkit', 'database', 'crew'],
  distributed: ['errors', 'connect', 'toolkit', 'database', 'crew', 'pipeline'],
  schema: ['errors', 'connect', 'toolkit', 'database'],
  cluster: ['errors', 'connect'],
  store: ['errors', 'connect', 'toolkit', 'database', 'schema', 'cluster'],
  history: ['errors', 'connect', 'toolkit', 'database', 'crew', 'pipeline', 'store', 'schema', 'cluster'],
}

/** The imports that cross a layer on purpose; the rules after the layer rules keep them narrow. */
const allowed = {
  // db.crew() / db.store(): Database names the Crew and Store types and loads crew.ts / store.ts on first use (await import).
  database: ['^src/crew/crew\\.ts$', '^src/store/store\\.ts$'],
  // A pipeline task's writes and its done mark commit in one transaction inside the worker.
  crew: ['^src/pipeline/pipeline-ledger\\.ts$'],
  // runPipeline records its run: it names the history's types and loads run-recorder.ts on first use (await import).
  pipeline: ['^src/history/run-recorder\\.ts$'],
}

const topLevel = '^src/[^/]+$'
const entries = '^src/(index|cli)\\.ts$'

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'A cycle of imports that run when a module loads: break it by moving the shared piece into the lower file. ' +
        'Type-only imports are erased and an await import() runs on first use, so a cycle through either is not one.',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only', 'dynamic-import'] } },
    },
    ...Object.entries(layers).map(([layer, below]) => ({
      name: `${layer}-imports-only-below`,
      severity: 'error',
      comment: `src/${layer}/ may import only ${below.length ? below.map((l) => `src/${l}/`).join(', ') : 'itself'} (and packages): see ARCHITECTURE.md`,
      from: { path: `^src/${layer}/` },
      to: { path: '^src/', pathNot: [`^src/(${[layer, ...below].join('|')})/`, ...(allowed[layer] ?? [])] },
    })),
    {
      name: 'database-reaches-crew-only-lazily',
      severity: 'error',
      comment: 'src/database/ may name crew types and load src/crew/crew.ts with await import() (db.crew()), never import it up front',
      from: { path: '^src/database/' },
      to: { path: '^src/crew/', dependencyTypesNot: ['type-only', 'dynamic-import'] },
    },
    {
      name: 'database-reaches-store-only-lazily',
      severity: 'error',
      comment: 'src/database/ may name store types and load src/store/store.ts with await import() (db.store()), never import it up front',
      from: { path: '^src/database/' },
      to: { path: '^src/store/', dependencyTypesNot: ['type-only', 'dynamic-import'] },
    },
    {
      name: 'pipeline-reaches-history-only-lazily',
      severity: 'error',
      comment: 'src/pipeline/ may name run-history types and load src/history/run-recorder.ts with await import() (the run history), never import it up front',
      from: { path: '^src/pipeline/' },
      to: { path: '^src/history/', dependencyTypesNot: ['type-only', 'dynamic-import'] },
    },
    {
      name: 'crew-reaches-ledger-only-from-runtime',
      severity: 'error',
      comment: "Only the worker runtime (src/crew/crew-runtime.ts) marks a pipeline task done in the task's transaction",
      from: { path: '^src/crew/', pathNot: '^src/crew/crew-runtime\\.ts$' },
      to: { path: '^src/pipeline/' },
    },
    {
      name: 'src-not-into-tests-or-workers',
      severity: 'error',
      comment: 'The library does not import its tests, benches, examples or worker entry files (the crew loads workers/ by URL)',
      from: { path: '^src/' },
      to: { path: '^(test|bench|examples|workers|scripts)/' },
    },
    {
      name: 'cli-entry-only-into-cli',
      severity: 'error',
      comment: 'src/cli.ts is the bin: it only wires the process to src/cli/',
      from: { path: '^src/cli\\.ts$' },
      to: { path: '^src/', pathNot: '^src/cli/' },
    },
    // A file at the top of src/ is caught whether it imports, is imported, or neither.
    ...[
      { from: { path: topLevel, pathNot: entries }, to: {} },
      { from: {}, to: { path: topLevel, pathNot: entries } },
      { from: { orphan: true, path: topLevel, pathNot: entries }, to: {} },
    ].map((where) => ({
      name: 'src-in-a-subsystem-folder',
      severity: 'error',
      comment: 'Every src file lives in its subsystem folder; only src/index.ts (the barrel) and src/cli.ts (the bin) sit at the top',
      ...where,
    })),
    {
      name: 'no-orphans',
      severity: 'error',
      comment: 'A src file nothing imports is dead code (or an entry point missing from this rule)',
      from: { orphan: true, path: '^src/' },
      to: {},
    },
    {
      name: 'src-no-dev-dependencies',
      severity: 'error',
      comment: 'The published library must not import a devDependency: users do not have it',
      from: { path: '^src/' },
      // A dynamic import is an optional tool loaded when present (tsx, for .ts worker files).
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only', 'dynamic-import'] },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that resolves to no file',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'], exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
}
