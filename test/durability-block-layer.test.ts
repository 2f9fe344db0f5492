import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { native } from '../src/native';
import { Device, type EngineKind } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { open, type Volume } from '../src/index';
import { BlockTrace, blockTraceUnavailable, type BlockRequest, type BlockTraceLog } from './support/block-trace';
import { attachLoopDevice, loopDeviceUnavailable, type LoopDevice } from './support/loop-device';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * G3 and G4 as the kernel sees them. Every other durability oracle of the
 * suite trusts the BlockIo interface: that `flush()` flushes and that a
 * `dsync` write is durable on completion. Here the block layer's own
 * tracepoints, on a loop device, show each request the device received:
 * a write is durable once a flush request issued after it completed has
 * completed itself (or it carried FUA). The tests mark the trace when a
 * commit is asked for and when it resolves, and check against those marks.
 *
 * The journal's layout is taken from docs/FORMAT.md (superblocks in blocks 0
 * and 1, the log ring from block 2, then the data area), not from the code.
 */

const BLOCK = 4096;
const SECTORS_PER_BLOCK = BLOCK / 512;
const DEVICE_BYTES = 8 << 20;
const LOG_BLOCKS = 64;
const DATA_START = 2 + LOG_BLOCKS; // FORMAT.md: block 2 + L is volume block 0
const DELTAS = 6;

const engines = (): EngineKind[] => (native.probeIoUring() === 0 ? ['io_uring', 'threads'] : ['threads']);

/** The blocks delta k changes: its own, never another delta's, so each write names its delta. */
function blocksOf(k: number): number[] {
  return [k * 40, k * 40 + 1, k * 40 + 2, k * 40 + 17, 1000 + k];
}

function durableBy(log: BlockTraceLog, write: BlockRequest, point: number): boolean {
  const at = log.durableAt(write);
  return at !== undefined && at < point;
}

describe('G3, G4 at the block layer: what a loop device received, by tracefs', function () {
  let scratch: ScratchDir | undefined;
  let loop: LoopDevice | undefined;
  let trace: BlockTrace | undefined;
  let devices = 0;

  before(function () {
    const why = loopDeviceUnavailable() ?? blockTraceUnavailable();
    if (why !== undefined) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    scratch = makeScratchDir('block-trace');
  });
  // A fresh device per test: nothing one test formatted is met by the next.
  beforeEach(() => {
    const file = scratch!.file(`device-${++devices}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DEVICE_BYTES);
    loop = attachLoopDevice(file);
  });
  afterEach(() => {
    trace?.remove();
    trace = undefined;
    loop?.detach();
    loop = undefined;
  });
  after(() => {
    scratch?.remove();
  });

  for (const engine of ['io_uring', 'threads'] as const) {
    describe(`${engine} engine`, () => {
      before(function () {
        if (!engines().includes(engine)) {
          console.log('      skipped: io_uring is unavailable here');
          this.skip();
        }
      });

      it('G3: a dsync write is durable on the device when its result arrives; flush() is a flush request the device completed', async () => {
        const device = await Device.open(loop!.path, { engine });
        const slab = Slab.alloc(BLOCK, 2);
        try {
          slab.page(0).fill(1);
          slab.page(1).fill(2);
          trace = BlockTrace.start(loop!.path);
          await device.run([{ op: 'write', offset: 10 * BLOCK, buffers: [slab.page(0)], dsync: true }]);
          trace.mark('dsync write returned');
          await device.run([{ op: 'write', offset: 20 * BLOCK, buffers: [slab.page(1)] }]);
          trace.mark('plain write returned');
          await device.flush();
          trace.mark('flush returned');
          const log = trace.stop();
          trace = undefined;
          const [dsync] = log.writesTo(10 * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK);
          const [plain] = log.writesTo(20 * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK);
          assert.ok(dsync && plain, `both writes reached the device:\n${log.describe()}`);
          assert.ok(durableBy(log, dsync, log.mark('dsync write returned')), `the dsync write was durable before its result:\n${log.describe()}`);
          assert.ok(!durableBy(log, plain, log.mark('plain write returned')), `a plain write is not durable by itself (the oracle can tell):\n${log.describe()}`);
          assert.ok(durableBy(log, plain, log.mark('flush returned')), `flush() made the plain write durable before it returned:\n${log.describe()}`);
          const opcodes = new Set(log.submits.map((s) => s.opcode));
          if (engine === 'io_uring') {
            assert.ok(opcodes.has('WRITEV') && opcodes.has('FSYNC'), `the ring submitted the writes and the flush: ${[...opcodes]}`);
          } else {
            assert.ok(!opcodes.has('WRITEV') && !opcodes.has('FSYNC'), `the thread engine uses no ring: ${[...opcodes]}`);
          }
        } finally {
          slab.release();
          await device.close();
        }
      });

      for (const journal of [false, true]) {
        const mode = journal ? 'journal' : 'ordered';
        it(`G3 (${mode} mode): each delta's writes are durable on the device before its commit() resolves${journal ? '; its commit record is durable before any of its home writes is issued' : ''}`, async () => {
          const vol: Volume = await open(loop!.path, { engine, blockSize: BLOCK, journal, ...(journal ? { format: true, logSize: LOG_BLOCKS * BLOCK } : {}) });
          const homeBlock = (i: number) => (journal ? DATA_START + i : i);
          const deltas: number[] = [];
          try {
            trace = BlockTrace.start(loop!.path);
            for (let k = 1; k <= DELTAS; k++) {
              await vol.change(async (tx) => {
                for (const b of blocksOf(k)) (await tx.write(b)).fill(k);
              });
              trace.mark(`commit ${k} asked`);
              deltas.push(await vol.commit());
              trace.mark(`commit ${k} resolved`);
            }
          } finally {
            await vol.close();
          }
          trace.mark('closed');
          const log = trace.stop();
          trace = undefined;
          assert.deepEqual(deltas, [...deltas].sort((a, b) => a - b), 'delta numbers grow');

          for (let k = 1; k <= DELTAS; k++) {
            const asked = log.mark(`commit ${k} asked`);
            const resolved = log.mark(`commit ${k} resolved`);
            // The writes that carry delta k: in ordered mode its blocks at home,
            // in journal mode its log records (descriptor, images, commit record).
            const carrying = journal
              ? log.writesTo(2 * SECTORS_PER_BLOCK, LOG_BLOCKS * SECTORS_PER_BLOCK, asked, resolved)
              : blocksOf(k).flatMap((b) => log.writesTo(homeBlock(b) * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK, asked, resolved));
            const context = `delta ${k}:\n${log.describe(asked, resolved)}`;
            if (journal) {
              const sectors = carrying.reduce((n, w) => n + w.sectors, 0);
              // FORMAT.md: d + n + 1 blocks, d = ceil((48 + 12 n) / blockSize) = 1 here.
              assert.ok(sectors >= (1 + blocksOf(k).length + 1) * SECTORS_PER_BLOCK, `the log received delta ${k}'s descriptor, images and commit record: ${context}`);
            } else {
              for (const b of blocksOf(k)) {
                assert.ok(
                  carrying.some((w) => w.sector <= homeBlock(b) * SECTORS_PER_BLOCK && homeBlock(b) * SECTORS_PER_BLOCK < w.sector + w.sectors),
                  `block ${b} of delta ${k} was written between its commit and the resolve: ${context}`,
                );
              }
            }
            for (const w of carrying) {
              assert.ok(durableBy(log, w, resolved), `G3: the write at sector ${w.sector} (+${w.sectors}) was durable before commit ${k} resolved: ${context}`);
            }
            if (journal) {
              const logDurable = Math.max(...carrying.map((w) => log.durableAt(w)!));
              for (const b of blocksOf(k)) {
                const homes = log.writesTo(homeBlock(b) * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK, asked);
                assert.ok(homes.length > 0, `block ${b} of delta ${k} was written home before close: ${log.describe(asked)}`);
                for (const h of homes) {
                  assert.ok(logDurable < h.issued, `G5: delta ${k}'s log records were durable before its home write of block ${b} was issued: ${log.describe(asked, h.issued)}`);
                }
              }
            }
          }
          const opcodes = new Set(log.submits.map((s) => s.opcode));
          if (engine === 'io_uring') assert.ok(opcodes.has('WRITEV'), `the ring submitted the writes: ${[...opcodes]}`);
          else assert.ok(!opcodes.has('WRITEV'), `the thread engine uses no ring: ${[...opcodes]}`);
        });
      }

      it('G4 (ordered mode, commits not awaited, deltas in flight): no write of a delta is issued before every write of the delta before it is durable', async () => {
        const vol: Volume = await open(loop!.path, { engine, blockSize: BLOCK, journal: false, maxDeltas: 4 });
        const commits: Promise<number>[] = [];
        try {
          trace = BlockTrace.start(loop!.path);
          for (let k = 1; k <= DELTAS; k++) {
            await vol.change(async (tx) => {
              for (const b of blocksOf(k)) (await tx.write(b)).fill(k);
            });
            commits.push(vol.commit().then((d) => (trace!.mark(`commit ${k} resolved`), d)));
          }
          await Promise.all(commits);
        } finally {
          await vol.close();
        }
        const log = trace.stop();
        trace = undefined;
        const writesOf = (k: number) => blocksOf(k).flatMap((b) => log.writesTo(b * SECTORS_PER_BLOCK, SECTORS_PER_BLOCK));
        for (let k = 1; k <= DELTAS; k++) {
          const mine = writesOf(k);
          assert.ok(mine.length > 0, `delta ${k} was written`);
          for (const w of mine) assert.ok(durableBy(log, w, log.mark(`commit ${k} resolved`)), `G3: delta ${k} durable before its commit resolved:\n${log.describe()}`);
          if (k === 1) continue;
          const before = Math.max(...writesOf(k - 1).map((w) => log.durableAt(w) ?? Infinity));
          const first = Math.min(...mine.map((w) => w.issued));
          assert.ok(before < first, `G4: delta ${k - 1} was durable (event ${before}) before delta ${k}'s first write was issued (event ${first}):\n${log.describe()}`);
        }
      });
    });
  }
});
