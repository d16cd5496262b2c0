// ESLint (flat config) with typescript-eslint's type-aware rules: the bugs this code can have are
// promises nobody awaits or catches and async functions handed to callbacks that drop their result.
// Rules switched off say why in one line; a rule that finds real bugs stays on.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const node = { process: 'readonly', console: 'readonly', module: 'writable', require: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' }

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tmp/', '.tmp-*/', 'test/fixtures/migrate/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['*.js', '*.cjs', 'scripts/*.mjs', 'bench/*.mjs'] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      // process.on('message', async …) is Node's idiom for a worker or child's request loop.
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      // `rows[0]!` marks an index the code knows is there; without noUncheckedIndexedAccess the rule calls all 149 unnecessary.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // node-postgres rows, JSON.parse and workerData are `any` at the boundary (180 hits, mostly tests asserting on rows).
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      // node-postgres' own signatures (query overloads, Cursor, prepared rows) are `any`; the wrappers pass that through.
      '@typescript-eslint/no-explicit-any': 'off',
      // An async handler or interface method returns a promise even when it has nothing to await (21 hits).
      '@typescript-eslint/require-await': 'off',
      // A failure kept in a field (a listener's, a run's) is rethrown as it came, whatever the user threw.
      '@typescript-eslint/only-throw-error': 'off',
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // Error messages quote what the user passed, which may be of any type; String() of it is the point.
      '@typescript-eslint/no-base-to-string': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      // @types/pg types some awaited calls (a query with query_timeout, a lease's release) as non-promises.
      '@typescript-eslint/await-thenable': 'off',
      // A savepoint's scope closes over its Transaction on purpose (transaction.ts).
      '@typescript-eslint/no-this-alias': 'off',
      // prepareValue is a plain function of pg/lib/utils.js, not a method.
      '@typescript-eslint/unbound-method': 'off',
      // Messages escape control characters and tests look for them: those regexes match them on purpose.
      'no-control-regex': 'off',
      // Handlers name what they receive; `_x` and rest siblings drop fields on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    files: ['test/**'],
    rules: {
      // Tests check that a value of the wrong kind is refused, so they name the loose Function type.
      '@typescript-eslint/no-unsafe-function-type': 'off',
      // The fault fixtures fall through to process.exit() or an endless loop on purpose.
      'no-fallthrough': 'off',
    },
  },
  { files: ['**/*.js', '**/*.cjs', '**/*.mjs'], ...tseslint.configs.disableTypeChecked, languageOptions: { globals: node } },
)
