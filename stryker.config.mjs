// StrykerJS over the modules that hold modelgate's guarantees. Run with `npm run test:mutation`;
// `MUTATE_MODULES=policy npm run test:mutation` narrows the run to one module (comma-separated).
// Each module names the focused unit tests that guard it, so a mutant runs only those files
// (the TAP runner with per-test coverage analysis runs only the files that reach the mutant).
// No TypeScript checker: @stryker-mutator/typescript-checker drives the classic `tsc` API, which
// the native tsc 7 does not offer; `npm run typecheck` stays the type gate.

/** @type {Record<string, { mutate: string[]; testFiles: string[] }>} */
const modules = {
  identity: {
    mutate: ['src/identity/**/*.ts', '!src/identity/**/*.types.ts'],
    testFiles: ['test/identity/*.test.ts'],
  },
  policy: {
    mutate: ['src/policy/**/*.ts', '!src/policy/**/*.types.ts'],
    testFiles: ['test/policy/*.test.ts', 'test/identity/grants.test.ts'],
  },
  integrity: {
    mutate: ['src/integrity/**/*.ts'],
    testFiles: ['test/integrity/*.test.ts', 'test/server/integrity.test.ts'],
  },
};

const chosen = (process.env.MUTATE_MODULES ?? 'identity,policy,integrity')
  .split(',')
  .map((name) => name.trim())
  .filter((name) => name !== '');
for (const name of chosen) {
  if (!(name in modules))
    throw new Error(`MUTATE_MODULES: unknown module ${name} (known: ${Object.keys(modules)})`);
}

export default {
  $schema: './node_modules/@stryker-mutator/core/schema/stryker-schema.json',
  packageManager: 'npm',
  plugins: ['@stryker-mutator/tap-runner'],
  testRunner: 'tap',
  tap: {
    testFiles: [...new Set(chosen.flatMap((name) => modules[name].testFiles))],
    // `node` is the pinned Node 24 when run through npm (node_modules/.bin comes first on PATH).
    nodeArgs: ['-r', '{{hookFile}}', '--test-reporter=tap', '{{testFile}}'],
    forceBail: true,
  },
  mutate: chosen.flatMap((name) => modules[name].mutate),
  coverageAnalysis: 'perTest',
  incremental: false,
  concurrency: 2,
  timeoutMS: 20000,
  timeoutFactor: 2,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  // Reports and the sandbox live under .modelgate/ (ignored by git and Biome, like other local state).
  htmlReporter: { fileName: '.modelgate/mutation/mutation.html' },
  jsonReporter: { fileName: '.modelgate/mutation/mutation.json' },
  thresholds: { high: 90, low: 80, break: null },
  // Stryker rewrites the tsconfig in its sandbox through the classic `typescript` API, which tsc 7 lacks;
  // nothing here compiles (Node strips the types), so point it at a file that does not exist.
  tsconfigFile: 'tsconfig.stryker-none.json',
  tempDirName: '.modelgate/stryker-tmp',
  cleanTempDir: 'always',
  // The sandbox needs the sources and tests; node_modules is linked, not copied.
  ignorePatterns: ['.modelgate', 'bench', 'deploy'],
};
