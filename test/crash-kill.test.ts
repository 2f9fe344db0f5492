import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import { open, type Volume } from '../src/volume';
import { checkJournal, checkOrdered } from './support/crash-checks';
import { BLOCKS_SPANNED, blockImage, rngFor, WorkloadModel, type CrashConfig, type CrashMode } from './support/crash-model';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * Process-kill crash tests: a child process runs a deterministic workload of
 * deltas on a real O_DIRECT volume (test/support/crash-child.ts, workload
 * and block images in test/support/crash-model.ts) and reports each delta it
 * closes and each commit that resolves; the parent kills it with SIGKILL at
 * a random instant, reopens the volume and reads every block the workload
 * could have touched.
 *
 * - Ordered mode (`journal: false`): every block holds its value after some
 *   delta D_b, D_ack <= D_b <= the last delta closed (G3, G4), never torn,
 *   and at most one delta is half written (README).
 * - Journal mode (G5): the volume holds exactly the state after one delta D,
 *   D_ack <= D <= the last delta closed.
 * - Journal mode on format version 2 (redirect-on-write), the same G5: the
 *   workload's deltas also write runs of consecutive blocks, and the
 *   threshold (`redirectMin`, 2 or 4 blocks) is low, so most deltas mix
 *   redirected runs (written once, to new physical blocks, in the batch of
 *   the log records; the map blocks logged) with blocks logged whole.
 *
 * D_ack is the last delta whose commit() resolved before the kill. A kill is
 * not a power cut: what the kernel has accepted survives, so this tests the
 * library's own ordering (journal-power-loss.test.ts and ordered-power-loss.test.ts cover dropped writes).
 *
 * The child runs plain JavaScript transpiled from src/ and test/support/
 * into the scratch directory when the file starts: with ts-node a child
 * takes about 1.8 s to start on this machine, transpiled about 0.15 s.
 *
 * BLOCKFORK_CRASH_SEED (a base seed), BLOCKFORK_CRASH_RUNS (runs per mode,
 * at most) and BLOCKFORK_CRASH_BUDGET_MS (time per mode after which no new
 * run starts, once 16 have) replay or extend a run; the seed of any failure
 * is in its message (kill instants are drawn from it, but timing is real).
 */

const SIZE = 4 << 20;
const BLOCK_SIZE = 4096;
/** Runs per mode, at most; at least MIN_RUNS, and no new run after BUDGET_MS (a loaded machine runs fewer). */
const RUNS = Number(process.env.BLOCKFORK_CRASH_RUNS ?? 60);
const MIN_RUNS = Math.min(RUNS, 16);
const BUDGET_MS = Number(process.env.BLOCKFORK_CRASH_BUDGET_MS ?? 22_000);
/** Version 2 runs in addition to version 1's: a shorter budget by default (still at least MIN_RUNS runs). */
const V2_BUDGET_MS = Number(process.env.BLOCKFORK_CRASH_V2_BUDGET_MS ?? Math.min(BUDGET_MS, 14_000));
const PARALLEL = 2;
const BASE_SEED = process.env.BLOCKFORK_CRASH_SEED !== undefined ? Number(process.env.BLOCKFORK_CRASH_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
/** A child that has not acknowledged a commit by then is stuck. */
const STUCK_MS = 20_000;

const REPO = path.resolve(__dirname, '..');
const CHILD_SOURCES = ['test/support/crash-child.ts', 'test/support/crash-model.ts', 'test/support/random.ts'];

/** Transpiles src/ and the child's files into `out` (same layout), with the addon and node_modules reachable from there. */
function transpileChild(out: string): string {
  const files = [...listTs(path.join(REPO, 'src')), ...CHILD_SOURCES.map((f) => path.join(REPO, f))];
  for (const file of files) {
    const result = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
    });
    const target = path.join(out, path.relative(REPO, file)).replace(/\.ts$/, '.js');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, result.outputText);
  }
  for (const link of ['node_modules', 'build', 'prebuilds', 'package.json']) {
    if (fs.existsSync(path.join(REPO, link))) fs.symlinkSync(path.join(REPO, link), path.join(out, link));
  }
  return path.join(out, 'test/support/crash-child.js');
}

function listTs(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return listTs(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

interface ChildReport {
  base: number | undefined;
  /** The last plan delta whose commit() was called (0: none). */
  closed: number;
  /** The last plan delta whose commit resolved (0: none). */
  acked: number;
  forks: number;
  spaceWaits: number;
  /** Version 2: blocks redirected so far, at the last acknowledgement. */
  redirected: number;
  reserveWaits: number;
  error: string | undefined;
}

interface RunResult {
  seed: number;
  acked: number;
  closed: number;
  /** Journal: the delta whose state the volume holds. Ordered: the newest delta any block holds, at least acked. */
  found: number;
  /** Ordered: one delta is half written (the blocks hold no single delta's state). */
  halfWritten: boolean;
  forks: number;
  spaceWaits: number;
  redirected: number;
  reserveWaits: number;
  killed: boolean;
}

/**
 * Opens the volume the child left at once, with the default lockTimeout, as
 * a supervisor restarts a service: the lock (flock) can outlive the child for
 * a few milliseconds, while the kernel drains the dead process's I/O in
 * flight, and open waits for it.
 */
function reopen(config: CrashConfig): Promise<Volume> {
  return open(config.path, { size: config.size, blockSize: config.blockSize, journal: config.mode === 'journal', cacheSize: 1 << 20 });
}

/** What the volume the child left says of itself: its format version. */
async function formatVersionOf(config: CrashConfig): Promise<number | undefined> {
  const vol = await reopen(config);
  try {
    return vol.stats().journal?.redirect === undefined ? 1 : 2;
  } finally {
    await vol.close();
  }
}

async function readBack(config: CrashConfig, blocks: readonly number[]): Promise<Map<number, Buffer>> {
  const vol = await reopen(config);
  try {
    assert.ok(vol.blockCount >= BLOCKS_SPANNED, `the volume has ${vol.blockCount} blocks, the workload spans ${BLOCKS_SPANNED}`);
    const read = new Map<number, Buffer>();
    for (const block of blocks) read.set(block, await vol.read(block));
    return read;
  } finally {
    await vol.close();
  }
}

/** Runs the child on a new volume and kills it at an instant drawn from the seed; resolves with what it reported. */
function runChild(childJs: string, config: CrashConfig): Promise<ChildReport & { killed: boolean }> {
  const rng = rngFor(config.seed, 3);
  // Most runs: kill 0-250 ms after the first acknowledged commit. Some: soon after the volume opens, maybe before any commit.
  const early = rng() < 0.1;
  const delay = early ? rng() * 30 : rng() * 250;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childJs, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const report: ChildReport = { base: undefined, closed: 0, acked: 0, forks: 0, spaceWaits: 0, redirected: 0, reserveWaits: 0, error: undefined };
    let killed = false;
    let armed = false;
    let stderr = '';
    let pending = '';
    const kill = (): void => {
      if (killed) return;
      killed = true;
      child.kill('SIGKILL');
    };
    const arm = (): void => {
      if (armed) return;
      armed = true;
      setTimeout(kill, delay);
    };
    const stuck = setTimeout(() => {
      report.error ??= `no commit acknowledged within ${STUCK_MS} ms`;
      kill();
    }, STUCK_MS);
    const line = (text: string): void => {
      const [what, ...args] = text.split(' ');
      if (what === 'ready') {
        report.base = Number(args[0]);
        if (early) arm();
      } else if (what === 'close') {
        report.closed = Number(args[0]);
      } else if (what === 'ack') {
        const k = Number(args[0]);
        if (k !== report.acked + 1) report.error ??= `commits resolved out of order: ${k} after ${report.acked}`;
        report.acked = k;
        report.forks = Number(args[1]);
        report.spaceWaits = Number(args[2]);
        report.redirected = Number(args[3]);
        report.reserveWaits = Number(args[4]);
        arm();
      } else if (what === 'error') {
        report.error ??= args.join(' ');
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      // Lines are taken as they come: the kill timer starts from the first acknowledgement.
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        line(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(stuck);
      if (pending.length > 0) line(pending);
      if (report.error !== undefined || signal !== 'SIGKILL') {
        reject(new Error(`seed ${config.seed}: the child ${signal ? `died of ${signal}` : `exited with ${code}`}: ${report.error ?? ''} ${stderr.trim()}`));
      } else {
        resolve({ ...report, killed });
      }
    });
  });
}

type Variant = CrashMode | 'journal-v2';

function configFor(scratch: ScratchDir, variant: Variant, seed: number): CrashConfig {
  const mode: CrashMode = variant === 'ordered' ? 'ordered' : 'journal';
  const common = { mode, seed, path: scratch.file(`${variant}-${seed}.img`), size: SIZE, blockSize: BLOCK_SIZE, maxDeltas: 1 + (seed % 3) };
  if (variant !== 'journal-v2') {
    // 8 to 24 pages for 96 blocks: evictions and reads back; a delta dirties up to 20, so with deltas in flight the cache is sometimes full.
    return { ...common, cacheSize: (8 + (seed % 5) * 4) * BLOCK_SIZE };
  }
  // A delta dirties up to 60 blocks with runs, plus the map's summary and map block: 24 to 56 pages.
  // Runs of 2 or more (or 4 or more) blocks are redirected. The reserve: the log's size (an eighth of the volume), or
  // in a third of the runs 16 blocks (less than a delta may redirect), so that frees are released by checkpoints and reused, and plans wait for reserve.
  const reserveSize = seed % 3 === 0 ? 16 * BLOCK_SIZE : undefined;
  return { ...common, cacheSize: (24 + (seed % 5) * 8) * BLOCK_SIZE, formatVersion: 2, redirectMin: (seed % 2 === 0 ? 2 : 4) * BLOCK_SIZE, reserveSize, runs: true };
}

async function crashRun(childJs: string, scratch: ScratchDir, variant: Variant, seed: number): Promise<RunResult> {
  const config = configFor(scratch, variant, seed);
  const mode = config.mode;
  try {
    const report = await runChild(childJs, config);
    const model = new WorkloadModel(seed, 0);
    const read = await readBack(config, model.blocks).catch((error: Error) => {
      throw Object.assign(new Error(`${variant}, seed ${seed}, D_ack ${report.acked}, last closed ${report.closed}: reopening after the kill failed: ${error.message}`), { cause: error });
    });
    let found: number;
    let halfWritten = false;
    if (mode === 'journal') {
      found = checkJournal(seed, report.acked, report.closed, read, config.runs === true, variant);
      if (variant === 'journal-v2' && seed % 8 === 0) assert.equal(await formatVersionOf(config), 2, `seed ${seed}: the volume is of version 2`);
    } else {
      ({ newest: found, halfWritten } = checkOrdered(seed, report.acked, report.closed, read));
    }
    return { seed, acked: report.acked, closed: report.closed, found, halfWritten, forks: report.forks, spaceWaits: report.spaceWaits, redirected: report.redirected, reserveWaits: report.reserveWaits, killed: report.killed };
  } finally {
    fs.rmSync(config.path, { force: true });
  }
}

async function crashRuns(childJs: string, scratch: ScratchDir, mode: Variant, modeSalt: number, budgetMs = BUDGET_MS): Promise<RunResult[]> {
  const seeds = Array.from({ length: RUNS }, (_, i) => (BASE_SEED + modeSalt + i * 0x9e3779b1) >>> 0);
  const results: RunResult[] = [];
  const failures: unknown[] = [];
  let next = 0;
  const deadline = Date.now() + budgetMs;
  // After a failure no new run starts; the runs under way finish (their children killed) before it is thrown.
  const worker = async (): Promise<void> => {
    while (next < seeds.length && failures.length === 0 && (next < MIN_RUNS || Date.now() < deadline)) {
      try {
        results.push(await crashRun(childJs, scratch, mode, seeds[next++]));
      } catch (error) {
        failures.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  if (failures.length > 0) throw failures[0];
  return results;
}

function summary(mode: Variant, results: readonly RunResult[], ms: number): string {
  const gaps = new Map<number, number>();
  for (const r of results) {
    const gap = Math.min(r.found - r.acked, 5);
    gaps.set(gap, (gaps.get(gap) ?? 0) + 1);
  }
  const distribution = [...gaps.keys()]
    .sort((a, b) => a - b)
    .map((g) => `${g === 5 ? '5+' : g}:${gaps.get(g)}`)
    .join(' ');
  const sum = (f: (r: RunResult) => number): number => results.reduce((total, r) => total + f(r), 0);
  const what = mode === 'ordered' ? 'newest delta seen - D_ack' : 'D - D_ack';
  const redirected = mode === 'journal-v2' ? `, blocks redirected ${sum((r) => r.redirected)} (in ${results.filter((r) => r.redirected > 0).length} runs), reserve waits ${sum((r) => r.reserveWaits)}` : '';
  const halfWritten = mode === 'ordered' ? `, one delta half written in ${results.filter((r) => r.halfWritten).length} runs` : '';
  return (
    `      crash-kill ${mode}: ${results.length} runs, ${results.filter((r) => r.killed).length} kills ` +
    `(${results.filter((r) => r.acked === 0).length} before any ack), ${sum((r) => r.acked)} deltas acknowledged, ` +
    `${sum((r) => r.closed - r.acked)} closed but not acknowledged, forks ${sum((r) => r.forks)} (in ${results.filter((r) => r.forks > 0).length} runs), ` +
    `cache-full waits ${sum((r) => r.spaceWaits)}${redirected}, ${what}: ${distribution}${halfWritten}; base seed ${BASE_SEED}, ${(ms / 1000).toFixed(1)} s`
  );
}

describe('crash by SIGKILL', function () {
  let scratch: ScratchDir;
  let childJs: string;

  before(function () {
    this.timeout(60_000);
    scratch = makeScratchDir('crash-kill');
    childJs = transpileChild(scratch.file('js'));
  });

  after(function () {
    scratch?.remove();
  });

  it('ordered mode: every block holds its value from a delta at or after the last acknowledged one, never torn, and at most one delta is half written', async function () {
    this.timeout(BUDGET_MS + 90_000);
    const started = Date.now();
    const results = await crashRuns(childJs, scratch, 'ordered', 0);
    console.log(summary('ordered', results, Date.now() - started));
    assert.ok(results.filter((r) => r.acked > 0).length >= results.length / 2, 'most runs are killed after a commit was acknowledged');
    assert.ok(results.some((r) => r.forks > 0), 'forks happen');
  });

  it('journal mode (G5): reopening gives exactly the state after one delta D >= the last acknowledged one', async function () {
    this.timeout(BUDGET_MS + 90_000);
    const started = Date.now();
    const results = await crashRuns(childJs, scratch, 'journal', 0x5a5a);
    console.log(summary('journal', results, Date.now() - started));
    assert.ok(results.filter((r) => r.acked > 0).length >= results.length / 2, 'most runs are killed after a commit was acknowledged');
    assert.ok(results.some((r) => r.forks > 0), 'forks happen');
  });

  it('journal mode, format version 2 (G5): long runs redirected, short ones logged; reopening gives exactly the state after one delta D >= the last acknowledged one', async function () {
    this.timeout(V2_BUDGET_MS + 90_000);
    const started = Date.now();
    const results = await crashRuns(childJs, scratch, 'journal-v2', 0xc2c2, V2_BUDGET_MS);
    console.log(summary('journal-v2', results, Date.now() - started));
    assert.ok(results.filter((r) => r.acked > 0).length >= results.length / 2, 'most runs are killed after a commit was acknowledged');
    assert.ok(results.some((r) => r.forks > 0), 'forks happen');
    // stats().journal.redirect.redirectedBlocks at the child's last acknowledgement: the runs really were redirected.
    assert.ok(results.filter((r) => r.redirected > 0).length >= results.filter((r) => r.acked > 2).length / 2, 'blocks are redirected in most runs');
    assert.ok(results.some((r) => r.redirected > 0), 'blocks are redirected');
  });
});

describe('crash checks reject what they should', function () {
  const seed = 1234;
  // Deltas 1..6 of the workload of `seed`, as the blocks would be after delta D.
  const stateAfter = (D: number): Map<number, Buffer> => {
    const model = new WorkloadModel(seed, D);
    return new Map(model.blocks.map((b) => [b, model.holder(D, b) === 0 ? Buffer.alloc(BLOCK_SIZE) : blockImage(seed, model.holder(D, b), b, BLOCK_SIZE)]));
  };
  /** A block that delta `k` writes. */
  const writtenBy = (k: number): number => {
    const model = new WorkloadModel(seed, k);
    return model.blocks.find((b) => model.holder(k, b) === k)!;
  };

  it('accepts the state after any delta from D_ack to the last closed', function () {
    for (let D = 2; D <= 6; D++) {
      assert.equal(checkJournal(seed, 2, 6, stateAfter(D)), D);
      assert.equal(checkOrdered(seed, 2, 6, stateAfter(D)).halfWritten, false);
    }
  });

  it('rejects a state older than D_ack, in both modes', function () {
    const older = stateAfter(2);
    assert.throws(() => checkJournal(seed, 3, 6, older), /seed 1234, D_ack 3.*no whole delta's state.*first block \d+ holds/);
    assert.throws(() => checkOrdered(seed, 3, 6, older), /seed 1234, D_ack 3, last closed 6: block \d+ holds .*; after any delta from 3 to 6 it holds/);
  });

  it('rejects a block from a delta not yet closed, in both modes', function () {
    const read = stateAfter(4);
    const block = writtenBy(5);
    read.set(block, blockImage(seed, 5, block, BLOCK_SIZE));
    assert.throws(() => checkJournal(seed, 3, 4, read), /no whole delta's state/);
    assert.throws(() => checkOrdered(seed, 3, 4, read), new RegExp(`block ${block} holds the image of delta 5`));
  });

  it('rejects part of a delta in journal mode, and takes it in ordered mode', function () {
    const read = stateAfter(4);
    const block = writtenBy(5);
    read.set(block, blockImage(seed, 5, block, BLOCK_SIZE));
    assert.throws(() => checkJournal(seed, 4, 5, read), /no whole delta's state/);
    const fivesBlocks = new WorkloadModel(seed, 5);
    const several = fivesBlocks.blocks.filter((b) => fivesBlocks.holder(5, b) === 5).length > 1;
    assert.equal(checkOrdered(seed, 4, 5, read).halfWritten, several);
  });

  it('rejects two half-written deltas in ordered mode (the README allows one)', function () {
    // After 4, a block of 4 reverted to 3 and a block of 5 already there: two deltas in part, and no D explains it as D plus part of D+1.
    const model = new WorkloadModel(seed, 6);
    const onlyFour = model.blocks.find((b) => model.holder(4, b) === 4 && model.holder(5, b) === 4 && model.holder(3, b) !== 4);
    const onlyFive = model.blocks.find((b) => model.holder(5, b) === 5 && model.holder(4, b) !== 5 && b !== onlyFour);
    assert.ok(onlyFour !== undefined && onlyFive !== undefined, 'the workload of this seed has the blocks the case needs');
    const read = stateAfter(4);
    read.set(onlyFour, stateAfter(3).get(onlyFour)!);
    read.set(onlyFive, blockImage(seed, 5, onlyFive, BLOCK_SIZE));
    assert.throws(() => checkOrdered(seed, 3, 6, read), /more than one delta is half written/);
  });

  it('rejects a torn or misplaced block', function () {
    const read = stateAfter(4);
    const block = writtenBy(4);
    const torn = Buffer.from(read.get(block)!);
    torn.fill(0, 2048);
    read.set(block, torn);
    assert.throws(() => checkJournal(seed, 4, 4, read), new RegExp(`block ${block} holds garbage \\(torn`));
    assert.throws(() => checkOrdered(seed, 3, 4, read), new RegExp(`block ${block} holds garbage \\(torn`));
    const other = writtenBy(3) === block ? writtenBy(2) : writtenBy(3);
    read.set(block, stateAfter(4).get(other)!);
    assert.throws(() => checkOrdered(seed, 0, 4, read), /misplaced/);
  });
});
