import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/native';
import { fioArguments, fioSyncArguments, fioVersion, parseFioJson } from '../src/bench/fio';
import { check, type GoalInputs } from '../src/bench/goals';
import { THRESHOLD_RUN_KIB } from '../src/bench/redirect-threshold';
import { offsetSource, RANDOM_WRITE, SEQUENTIAL_WRITE } from '../src/bench/workloads';
import { buildCli, makeFile, makeTempDir, runCli } from './cli-support';

interface BenchRow {
  comparison: string;
  subject: string;
  mbPerSecond: number | null;
  opsPerSecond: number | null;
  latency: { p50Us: number; p99Us: number; maxUs: number } | null;
  value: number | null;
  vsFio: number | null;
  vsRaw: number | null;
  goals: { goal: string; actual: number | null; met: boolean | null }[];
  runs: number[];
  series?: { atMs: number; maxUs: number }[];
  note?: string;
}

interface BenchJson {
  results: BenchRow[];
  repeats: number;
  target: { bytes: number; kind: string };
  machine: { loadAverage: number[] };
}

const SMALL = 8 << 20;

function rowOf(report: BenchJson, comparison: string, subject: string): BenchRow {
  const row = report.results.find((r) => r.comparison === comparison && r.subject === subject);
  assert.ok(row, `no row for ${comparison} through ${subject}`);
  return row;
}

function positive(value: number | null | undefined, what: string): void {
  assert.ok(typeof value === 'number' && value > 0 && Number.isFinite(value), `${what}: ${value}`);
}

describe('blockfork bench', function () {
  let temp: { dir: string; remove: () => void };

  before(async function () {
    // The build of the command line compiles the TypeScript: minutes on a busy machine.
    this.timeout(300_000);
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  it('--quick --json --report on a file: rows for the raw engines and the cache, with positive numbers, and the report files', function () {
    const file = makeFile(path.join(temp.dir, 'bench.img'), SMALL);
    const dir = path.join(temp.dir, 'report');
    const run = runCli(['bench', file, '--quick', '--json', '--size', String(SMALL), '--report', dir]);
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as BenchJson;
    assert.equal(report.repeats, 1);
    assert.equal(report.target.bytes, SMALL);
    assert.equal(report.machine.loadAverage.length, 2);

    const raw = ['threads'];
    if (native.probeIoUring() === 0) raw.push('io_uring');
    const withFio = fioVersion() !== undefined;
    if (withFio) raw.push('fio', 'fio, fsync per commit');
    for (const comparison of ['sequential', 'random']) {
      for (const subject of [...raw, 'cache, ordered']) {
        const row = rowOf(report, comparison, subject);
        positive(row.mbPerSecond, `${comparison}/${subject} MB/s`);
        positive(row.opsPerSecond, `${comparison}/${subject} ops/s`);
        positive(row.vsRaw, `${comparison}/${subject} vs raw`);
        if (withFio) positive(row.vsFio, `${comparison}/${subject} vs fio`);
      }
      // Write rows are judged against fio with the same fsync cadence (issue 12).
      assert.equal(rowOf(report, comparison, 'cache, ordered').goals[0].goal, '≥ 0.9 × fio, fsync per commit');
    }
    for (const [comparison, subjects] of [
      ['sequential-read', ['cache, awaited loop', 'cache, 32 in flight']],
      ['random-read', ['cache, 32 in flight']],
    ] as const) {
      for (const subject of subjects) {
        const row = rowOf(report, comparison, subject);
        positive(row.mbPerSecond, `${comparison}/${subject} MB/s`);
        if (withFio) positive(row.vsFio, `${comparison}/${subject} vs fio`);
      }
    }
    // Version 2 beside version 1, and the price of its redirects.
    positive(rowOf(report, 'sequential', 'cache, journal v2').mbPerSecond, 'sequential: cache, journal v2, MB/s');
    for (const subject of ['cache, ordered', 'cache, journal v2']) positive(rowOf(report, 'fragmentation', subject).mbPerSecond, `fragmentation/${subject} MB/s`);
    for (const kib of THRESHOLD_RUN_KIB) {
      for (const how of ['redirected', 'logged']) {
        const row = rowOf(report, 'redirect-threshold', `${kib} KiB runs, ${how}`);
        positive(row.mbPerSecond, `redirect-threshold/${kib} KiB ${how} MB/s`);
        // Redirected runs are redirected (and logged ones not), and the read after them is measured.
        assert.match(row.note ?? '', how === 'logged' ? /^0 blocks redirected; .* [1-9][0-9]* MB\/s$/ : /^[1-9][0-9]* blocks redirected; .* [1-9][0-9]* MB\/s$/, row.note);
      }
    }
    const commits = rowOf(report, 'commits', 'cache, ordered');
    positive(commits.opsPerSecond, 'commits/s');
    positive(commits.latency?.p99Us, 'commit p99');
    if (native.probeIoUring() === 0) {
      // The journal's own writes on the raw engine: the floor under journal mode, beside it.
      for (const comparison of ['sequential', 'commits']) {
        const floor = rowOf(report, comparison, "io_uring, the journal's writes");
        positive(floor.mbPerSecond, `${comparison}: the journal's writes, MB/s`);
        positive(floor.vsRaw, `${comparison}: the journal's writes, vs raw`);
        positive(rowOf(report, comparison, 'cache, journal').mbPerSecond, `${comparison}: cache, journal, MB/s`);
      }
    }
    for (const subject of ['fork', 'fork: false', 'fork, no commits', 'fork, journal', 'fork: false, journal']) {
      const row = rowOf(report, 'hot-set', subject);
      positive(row.opsPerSecond, `hot set ${subject} writes/s`);
      positive(row.latency?.p99Us, `hot set ${subject} p99`);
      positive(row.latency?.maxUs, `hot set ${subject} max`);
      assert.ok(row.series && row.series.length > 0, `hot set ${subject}: no latency series`);
    }
    assert.deepEqual(rowOf(report, 'hot-set', 'fork').goals, [], "a closed loop's percentiles carry no G2 target");
    // G2 with commits faster than the device: latency from each update's scheduled instant.
    for (const comparison of ['slow-sata', 'slow-network']) {
      for (const subject of ['fork, 1 committer', 'fork: false, 1 committer', 'fork, 4 committers', 'fork: false, 4 committers', 'no commits']) {
        const row = rowOf(report, comparison, subject);
        positive(row.opsPerSecond, `${comparison}/${subject} updates/s`);
        positive(row.latency?.p99Us, `${comparison}/${subject} p99`);
        assert.match(row.note ?? '', /^offered 5000\/s, \d+ of \d+ updates done/);
      }
      assert.deepEqual(
        rowOf(report, comparison, 'fork, 4 committers').goals.map((g) => g.goal),
        ['p99 ≥ 10× below fork: false, 4 committers', '≥ 5K/s', 'p99.9 ≤ 2× no commits'],
      );
    }
    for (const clients of [1, 8, 64]) {
      for (const subject of ['cache, ordered', 'cache, journal', 'lmdb']) {
        const row = rowOf(report, `clients-${clients}`, subject);
        positive(row.opsPerSecond, `${clients} clients/${subject} acknowledged updates/s`);
        positive(row.latency?.p50Us, `${clients} clients/${subject} commit p50`);
      }
    }
    assert.deepEqual(
      rowOf(report, 'clients-64', 'cache, journal').goals.map((g) => g.goal),
      ['≥ 10 × fio', 'ops ≥ 1 × lmdb'],
    );
    positive(rowOf(report, 'memory', 'tx.write, dirty in this delta').opsPerSecond, 'rewrites/s');
    positive(rowOf(report, 'memory', 'fork').opsPerSecond, 'forks/s');
    // A few bytes a page, against a heap that moves by tens of KB between passes: on this small
    // target the median can come out just below zero, so only a number is asked for.
    const heap = rowOf(report, 'memory', 'JS heap per cached page').value;
    assert.ok(typeof heap === 'number' && Number.isFinite(heap), `heap bytes per page: ${heap}`);
    const replay = rowOf(report, 'replay', 'replay of a full log');
    positive(replay.mbPerSecond, 'replay MB/s');
    assert.match(replay.note ?? '', /ms per MB of log: \d+ deltas of 256 blocks/);
    // The journal: measured once open() takes journal: true, until then a row that says why not.
    for (const comparison of ['sequential', 'random', 'commits']) {
      const row = rowOf(report, comparison, 'cache, journal');
      if (row.runs.length === 0) assert.match(row.note ?? '', /^not available: .*journal/);
      else positive(row.opsPerSecond, `${comparison} journal ops/s`);
    }

    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'bench.json'), 'utf8')), report);
    const latency = fs.readFileSync(path.join(dir, 'latency.svg'), 'utf8');
    const throughput = fs.readFileSync(path.join(dir, 'throughput.svg'), 'utf8');
    for (const [name, svg] of [['latency.svg', latency], ['throughput.svg', throughput]]) {
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/, `${name} does not start with <svg`);
      assert.match(svg, /<\/svg>\n$/, `${name} does not end with </svg>`);
      assert.equal(tagBalance(svg), 0, `${name}: unbalanced tags`);
    }
    for (const series of ['fork', 'fork: false', 'fork, no commits']) {
      assert.ok(latency.includes(`data-series="${series}"`), `latency.svg has no line for ${series}`);
      assert.ok(latency.includes(`>${series}, p99 `), `latency.svg has no legend for ${series}`);
    }
    for (const subject of [...raw, 'cache, ordered']) {
      assert.ok(throughput.includes(`data-series="${subject}"`), `throughput.svg has no bar for ${subject}`);
    }
    assert.match(throughput, /goal \(issues 3, 4\)/);
  });

  it('prints a table by default, on stdout', function () {
    const file = makeFile(path.join(temp.dir, 'table.img'), SMALL);
    const run = runCli(['bench', file, '--quick', '--size', String(SMALL)]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /workload\s+subject\s+MB\/s\s+ops\/s\s+p50\s+p99\s+max\s+vs fio\s+vs raw\s+target/);
    assert.match(run.stdout, /threads/);
    assert.match(run.stdout, /hot set, back-to-back commits\s+fork\s/);
    assert.match(run.stdout, /≥ 0\.9 × fio: \d+\.\d\d (met|MISSED)/);
    if (fioVersion() === undefined) assert.match(run.stdout, /fio missing \(apt-get install fio\)/);
  });

  it('without PATH, writes on a scratch image, says where, and removes it', function () {
    const run = runCli(['bench', '--quick', '--json', '--size', String(SMALL)]);
    assert.equal(run.status, 0, run.stderr);
    const where = /scratch image (\S+)/.exec(run.stderr);
    assert.ok(where, `stderr names no scratch image: ${run.stderr}`);
    assert.equal(fs.existsSync(where[1]), false, `${where[1]} was left behind`);
    assert.match(run.stderr, /prefilling/);
    assert.equal((JSON.parse(run.stdout) as BenchJson).target.kind, 'scratch image');
  });

  it('refuses --size beyond the end of PATH', function () {
    const file = makeFile(path.join(temp.dir, 'short.img'), 4 << 20);
    const run = runCli(['bench', file, '--quick', '--size', '8M']);
    assert.equal(run.status, 1);
    assert.match(run.stderr, /^blockfork: --size 8 MiB is more than .* holds \(4 MiB\)\n$/);
  });
});

describe('bench workloads and fio', () => {
  it('random offsets are block-aligned, inside the region, and the same for the same seed', () => {
    const region = 64 << 20;
    const a = offsetSource(RANDOM_WRITE, region, 7);
    const b = offsetSource(RANDOM_WRITE, region, 7);
    for (let i = 0; i < 10_000; i++) {
      const offset = a();
      assert.equal(offset % RANDOM_WRITE.blockSize, 0);
      assert.ok(offset >= 0 && offset + RANDOM_WRITE.blockSize <= region);
      assert.equal(b(), offset);
    }
  });

  it('sequential offsets cover the region once, in order', () => {
    const next = offsetSource(SEQUENTIAL_WRITE, 4 << 20, 0);
    assert.deepEqual([next(), next(), next(), next()], [0, 1 << 20, 2 << 20, 3 << 20]);
  });

  it('fio gets the same engine, size, block size and depth as our pass', () => {
    const args = fioArguments(RANDOM_WRITE, { path: '/x:y', region: 1 << 30, seed: 5 });
    for (const arg of ['--ioengine=io_uring', '--direct=1', '--rw=randwrite', '--bs=4096', '--iodepth=32', `--size=${1 << 30}`, '--norandommap', '--randseed=5', '--filename=/x\\:y']) {
      assert.ok(args.includes(arg), `missing ${arg} in ${args.join(' ')}`);
    }
  });

  it('fio\'s awaited small writes: 4 KiB at depth 1, fsync after each, for a fixed time', () => {
    const args = fioSyncArguments({ path: '/f', region: 1 << 30, seed: 5 }, 0.75);
    for (const arg of ['--rw=randwrite', '--bs=4096', '--iodepth=1', '--fsync=1', '--time_based', '--runtime=750ms', '--direct=1']) {
      assert.ok(args.includes(arg), `missing ${arg} in ${args.join(' ')}`);
    }
  });

  it('goals judge a row against fio and against another row', () => {
    const row = (subject: string, p99Us: number | null, vsFio: number | null = null): GoalInputs => ({ subject, opsPerSecond: null, p99Us, value: null, vsFio });
    const rows = [row('fork', 2), row('fork: false', 50), row('idle', 1.5)];
    assert.deepEqual(check({ kind: 'p99-below', subject: 'fork: false', times: 10 }, rows[0], rows), {
      kind: 'p99-below', threshold: 10, goal: 'p99 ≥ 10× below fork: false', actual: 25, met: true,
    });
    assert.equal(check({ kind: 'p99-within', subject: 'idle', times: 2 }, rows[0], rows).met, true);
    assert.equal(check({ kind: 'vs-fio', atLeast: 0.9 }, row('cache', null, 0.5), rows).met, false);
    assert.equal(check({ kind: 'vs-fio', atLeast: 0.9 }, row('cache', null, null), rows).met, null);
  });

  it("reads fio's JSON, notes before it included", () => {
    const json = JSON.stringify({
      jobs: [{ error: 0, write: { bw_bytes: 2e9, iops: 1907.3, clat_ns: { max: 12e6, N: 120, percentile: { '50.000000': 4e6, '99.000000': 9e6 } } } }],
    });
    const m = parseFioJson(`note: both iodepth >= 1 and synchronous I/O engine are selected\n${json}`);
    assert.deepEqual(m, { bytesPerSecond: 2e9, opsPerSecond: 1907.3, latency: { count: 120, p50Us: 4e3, p99Us: 9e3, maxUs: 12e3 } });
    assert.throws(() => parseFioJson('fio: engine io_uring not loadable'), /no JSON report/);
  });
});

/** Opening tags minus closing ones (self-closing count as neither): zero for well-nested markup. */
function tagBalance(svg: string): number {
  let depth = 0;
  for (const match of svg.matchAll(/<(\/?)[a-zA-Z][^>]*?(\/?)>/g)) {
    if (match[1] === '/') depth--;
    else if (match[2] !== '/') depth++;
  }
  return depth;
}
