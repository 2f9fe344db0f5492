// Mutation testing of the layers whose tests are fast and whose bugs are
// silent: src/journal, src/delta, src/cache. Not in CI (it is slow):
//   npm run mutate                          all three folders
//   MUTATE=journal npm run mutate           one folder (journal, delta or cache)
//   npm run mutate -- --mutate 'src/journal/allocator.ts'   one file
// Each folder runs only the fast tests that exercise it (a few seconds per
// file). Left out as too slow per mutant: journal-fuzz (about 7 s) and
// journal-power-loss (about 11 s), which reach nearly every journal mutant,
// and the crash and model suites. With per-test coverage, a mutant runs only
// the tests that reach it.
const tests = {
  journal: [
    'test/journal-format.test.ts',
    'test/journal-format-document.test.ts',
    'test/journal-record-checks.test.ts',
    'test/journal-replay.test.ts',
    'test/journal-requests.test.ts',
    'test/journal-allocator.test.ts',
    'test/journal-delta-wrap.test.ts',
    'test/journal-checkpoint-failure.test.ts',
    'test/journal-format-v2-document.test.ts',
    'test/volume-redirect.test.ts',
    'test/volume-journal.test.ts',
    'test/native-crc32c.test.ts',
    'test/delta-switch.test.ts',
    'test/delta-group-commit.test.ts',
    'test/delta-lock.test.ts',
    'test/journal-replayed-view.test.ts',
    'test/journal-replay-redirected.test.ts',
    'test/journal-checkpoint-policy.test.ts',
    'test/journal-writer-checks.test.ts',
    'test/journal-format-checks.test.ts',
  ],
  delta: [
    'test/delta-pipeline.test.ts',
    'test/delta-lock.test.ts',
    'test/delta-group-commit.test.ts',
    'test/delta-writeout.test.ts',
    'test/delta-switch.test.ts',
    'test/cache-page.test.ts',
    'test/cache-mapping.test.ts',
    'test/cache-readahead.test.ts',
    'test/fork-blockdirty.test.ts',
    'test/cache-states.test.ts',
    'test/volume-api.test.ts',
    'test/volume-faults.test.ts',
    'test/volume-range.test.ts',
  ],
  cache: [
    'test/cache-page.test.ts',
    'test/cache-page-lock.test.ts',
    'test/cache-page-table.test.ts',
    'test/cache-read-policy.test.ts',
    'test/cache-mapping.test.ts',
    'test/cache-drop-mapping.test.ts',
    'test/cache-subpage.test.ts',
    'test/cache-readahead.test.ts',
    'test/cache-states.test.ts',
    'test/fork-blockdirty.test.ts',
    'test/delta-pipeline.test.ts',
    'test/volume-range.test.ts',
  ],
};
const folder = process.env.MUTATE ?? 'all';
if (folder !== 'all' && !(folder in tests)) throw new Error(`MUTATE must be one of ${Object.keys(tests).join(', ')} or all, got ${folder}`);
const folders = folder === 'all' ? Object.keys(tests) : [folder];

export default {
  testRunner: 'mocha',
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: 'perTest',
  ignoreStatic: true,
  mutate: folders.map((f) => `src/${f}/**/*.ts`),
  mochaOptions: {
    'no-config': true,
    spec: [...new Set(folders.flatMap((f) => tests[f]))],
    require: ['ts-node/register/transpile-only'],
    extension: ['ts'],
  },
  concurrency: 1,
  timeoutMS: 5000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['.bench-tmp', 'docs/api', 'reports', 'prebuilds'],
};
