import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/native';
import { fioArguments, fioVersion, parseFioJson } from '../src/cli/fio';
import { offsetSource, RANDOM_WRITE, SEQUENTIAL_WRITE } from '../src/cli/workloads';
import { buildCli, makeFile, makeTempDir, runCli } from './cli-support';

interface BenchRow {
  workload: string;
  subject: string;
  mbPerSecond: number | null;
  iops: number | null;
  ratio: number | null;
  note?: string;
}

const SMALL = 8 << 20;

describe('blockfork bench', function () {
  let temp: { dir: string; remove: () => void };

  before(async function () {
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  it('--quick --json on a file gives a row per workload and subject, with positive numbers', function () {
    const file = makeFile(path.join(temp.dir, 'bench.img'), SMALL);
    const run = runCli(['bench', file, '--quick', '--json', '--size', String(SMALL)]);
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { results: BenchRow[]; repeats: number; target: { bytes: number }; reference: string };
    assert.equal(report.repeats, 1);
    assert.equal(report.target.bytes, SMALL);
    const expected = ['threads'];
    if (native.probeIoUring() === 0) expected.push('io_uring');
    if (fioVersion() !== undefined) expected.push('fio');
    assert.equal(report.reference, fioVersion() !== undefined ? 'fio' : 'io_uring');
    for (const workload of [SEQUENTIAL_WRITE.id, RANDOM_WRITE.id]) {
      for (const subject of expected) {
        const row = report.results.find((r) => r.workload === workload && r.subject === subject);
        assert.ok(row, `no row for ${workload} through ${subject}`);
        assert.ok(row.mbPerSecond !== null && row.mbPerSecond > 0, `${workload}/${subject}: MB/s ${row.mbPerSecond}`);
        assert.ok(row.iops !== null && row.iops > 0, `${workload}/${subject}: IOPS ${row.iops}`);
        assert.ok(row.ratio !== null && row.ratio > 0, `${workload}/${subject}: ratio ${row.ratio}`);
      }
    }
  });

  it('prints a table by default, on stdout', function () {
    const file = makeFile(path.join(temp.dir, 'table.img'), SMALL);
    const run = runCli(['bench', file, '--quick', '--size', String(SMALL)]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /workload\s+engine\s+MB\/s\s+IOPS\s+p50\s+p99/);
    assert.match(run.stdout, /threads/);
    assert.match(run.stdout, fioVersion() !== undefined ? /vs fio/ : /fio missing \(apt-get install fio\)/);
  });

  it('without PATH, writes on a scratch image, says where, and removes it', function () {
    const run = runCli(['bench', '--quick', '--json', '--size', String(SMALL)]);
    assert.equal(run.status, 0, run.stderr);
    const where = /scratch image (\S+)/.exec(run.stderr);
    assert.ok(where, `stderr names no scratch image: ${run.stderr}`);
    assert.equal(fs.existsSync(where[1]), false, `${where[1]} was left behind`);
    assert.match(run.stderr, /prefilling/);
    assert.equal((JSON.parse(run.stdout) as { target: { kind: string } }).target.kind, 'scratch image');
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

  it("reads fio's JSON, notes before it included", () => {
    const json = JSON.stringify({
      jobs: [{ error: 0, write: { bw_bytes: 2e9, iops: 1907.3, clat_ns: { percentile: { '50.000000': 4e6, '99.000000': 9e6 } } } }],
    });
    const m = parseFioJson(`note: both iodepth >= 1 and synchronous I/O engine are selected\n${json}`);
    assert.deepEqual(m, { bytesPerSecond: 2e9, iops: 1907.3, latency: { p50Ns: 4e6, p99Ns: 9e6 } });
    assert.throws(() => parseFioJson('fio: engine io_uring not loadable'), /no JSON report/);
  });
});
