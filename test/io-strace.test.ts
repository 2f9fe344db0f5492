import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/native';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * What the kernel sees, by strace of a child process that opens a file and
 * writes, reads and flushes through it: the open has O_DIRECT, the io_uring
 * engine really sets up a ring and submits through it (no pwritev2 or preadv
 * on the device), and the thread engine really calls pwritev2 (with
 * RWF_DSYNC for a dsync write), preadv and fdatasync, and sets up no ring.
 */

const root = path.resolve(__dirname, '..');

function straceMissing(): string | undefined {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'strace is not installed (.ci/run installs it: apt-get install strace)';
  // strace needs ptrace; a locked-down container may forbid it.
  const trial = spawnSync('strace', ['-f', '-e', 'trace=none', 'true'], { encoding: 'utf8' });
  if (trial.status !== 0) return `strace cannot trace here: ${trial.stderr.trim().split('\n')[0]}`;
  return undefined;
}

interface Trace {
  /** Every line of strace's output. */
  lines: string[];
  /** The descriptor of the O_DIRECT open of the device file. */
  fd: number;
}

/** Reads the child submits in one batch, after its write, read and flush. */
const BATCH = 8;

function traceChild(file: string, engine: 'io_uring' | 'threads', log: string): Trace {
  const script = `
    const { Device } = require(${JSON.stringify(path.join(root, 'src/io/device.ts'))});
    const { Slab } = require(${JSON.stringify(path.join(root, 'src/io/slab.ts'))});
    (async () => {
      const slab = Slab.alloc(4096, 2 + ${BATCH});
      const device = await Device.open(${JSON.stringify(file)}, { size: 1 << 20, engine: ${JSON.stringify(engine)} });
      if (device.engine !== ${JSON.stringify(engine)}) throw new Error('got the ' + device.engine + ' engine');
      slab.page(0).fill(0x5a);
      await device.run([{ op: 'write', offset: 8192, buffers: [slab.page(0)], dsync: true }]);
      await device.run([{ op: 'read', offset: 8192, buffers: [slab.page(1)] }]);
      await device.flush();
      // One submit of ${BATCH} reads that no two of them follow one another: one batch, ${BATCH} requests.
      const batch = Array.from({ length: ${BATCH} }, (_, k) => ({ op: 'read', offset: 65536 + k * 8192, buffers: [slab.page(2 + k)] }));
      await device.run(batch);
      await device.close();
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawnSync(
    'strace',
    // -ff: one file per thread, so that no call is split into <unfinished> and <resumed> halves.
    ['-ff', '-o', log, '-e', 'trace=openat,io_uring_setup,io_uring_enter,pwritev2,preadv,fdatasync', process.execPath, '-r', 'ts-node/register/transpile-only', '-e', script],
    { cwd: root, encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(child.status, 0, `traced child failed: ${child.stderr}`);
  const dir = path.dirname(log);
  const lines = fs
    .readdirSync(dir)
    .filter((name) => name.startsWith(`${path.basename(log)}.`))
    .flatMap((name) => fs.readFileSync(path.join(dir, name), 'utf8').split('\n'));
  const quoted = JSON.stringify(file);
  const opens = lines.filter((l) => l.startsWith(`openat(AT_FDCWD, ${quoted}, `) && /\) = \d+$/.test(l) && l.includes('O_DIRECT'));
  assert.equal(opens.length, 1, `one successful openat of the device with O_DIRECT, in:\n${lines.filter((l) => l.includes(quoted)).join('\n')}`);
  assert.match(opens[0], /O_RDWR/);
  return { lines, fd: Number(/= (\d+)$/.exec(opens[0])![1]) };
}

describe('strace: O_DIRECT and the engines, as the kernel sees them', function () {
  let scratch: ScratchDir;

  before(function () {
    const why = straceMissing();
    if (why !== undefined) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    scratch = makeScratchDir('strace');
  });
  after(() => scratch?.remove());

  it('the io_uring engine opens with O_DIRECT, sets up a ring, and submits through it rather than by pwritev2/preadv', function () {
    if (native.probeIoUring() !== 0) {
      console.log('      skipped: io_uring is unavailable here');
      this.skip();
    }
    const file = scratch.file('uring.img');
    const { lines, fd } = traceChild(file, 'io_uring', scratch.file('uring.strace'));
    const setups = lines.filter((l) => /^io_uring_setup\(32, .*\) = \d+$/.test(l));
    assert.equal(setups.length, 1, 'one ring of queueDepth 32 entries');
    const ring = Number(/= (\d+)$/.exec(setups[0])![1]);
    const enters = lines.filter((l) => l.startsWith(`io_uring_enter(${ring}, `));
    assert.ok(enters.length >= 4, 'the write, the read, the flush and the batch enter the ring');
    // A batch's requests are offered to the kernel together, not one system call each.
    assert.equal(enters.filter((l) => l.startsWith(`io_uring_enter(${ring}, ${BATCH}, `) && l.endsWith(`= ${BATCH}`)).length, 1, `one enter submits the batch's ${BATCH} reads:\n${enters.join('\n')}`);
    for (const call of ['pwritev2', 'preadv', 'fdatasync']) {
      assert.deepEqual(
        lines.filter((l) => l.startsWith(`${call}(${fd},`) || l.startsWith(`${call}(${fd})`)),
        [],
        `no ${call} on the device`,
      );
    }
  });

  it('the threads engine opens with O_DIRECT and calls pwritev2 (RWF_DSYNC), preadv and fdatasync, with no ring', () => {
    const file = scratch.file('threads.img');
    const { lines, fd } = traceChild(file, 'threads', scratch.file('threads.strace'));
    assert.deepEqual(
      lines.filter((l) => l.includes('io_uring_setup(')),
      [],
      'no io_uring_setup',
    );
    const writes = lines.filter((l) => l.startsWith(`pwritev2(${fd}, `));
    assert.equal(writes.length, 1);
    assert.match(writes[0], /iov_len=4096\}\], 1, 8192, RWF_DSYNC\) = 4096$/);
    const reads = lines.filter((l) => l.startsWith(`preadv(${fd}, `));
    assert.equal(reads.length, 1 + BATCH);
    assert.equal(reads.filter((l) => /iov_len=4096\}\], 1, 8192\) = 4096$/.test(l)).length, 1);
    assert.equal(lines.filter((l) => l.startsWith(`fdatasync(${fd})`)).length, 1);
  });
});
