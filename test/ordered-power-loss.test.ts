import assert from 'node:assert/strict';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { checkOrdered } from './support/crash-checks';
import { BLOCKS_SPANNED, fillImage, planDelta, WorkloadModel } from './support/crash-model';
import { PowerLossDevice } from './support/power-loss-device';
import { seeded } from './support/random';
import { TempDir } from './support/temp';

/**
 * Ordered mode under power loss, the README's promise exactly: after a cut
 * at any instant, every block holds its value from a delta at or after the
 * last acknowledged one, and at most one delta is half written (the state
 * after some delta D, plus part of D+1). The workload is the crash-kill
 * tests' (crash-model.ts), run over the power-loss double, which keeps a
 * random subset of the writes not yet flushed.
 *
 * The block size is the device's sector size: the double tears writes at
 * sectors, and ordered mode, with no checksums, cannot tell a torn block.
 * The double holds requests behind a flush in flight, as both engines do
 * (durability-block-layer.test.ts shows it at the device).
 */

const DELTAS = 40;

describe('ordered mode under power loss', () => {
  let temp: TempDir;
  beforeEach(() => (temp = new TempDir()));
  afterEach(() => temp.remove());

  for (const seed of [71, 72]) {
    it(`G3, G4: every crash state is the state after a delta D >= the last acknowledged, plus at most part of D+1 (seed ${seed})`, async () => {
      const device = await Device.open(temp.file(), { size: 2 << 20 });
      const blockSize = Math.max(512, device.geometry.logicalSectorSize);
      assert.ok(BLOCKS_SPANNED * blockSize <= device.geometry.size, 'the workload fits the device');
      const recorder = await PowerLossDevice.wrap(device, { flushBarrier: true });
      const vol = Volume.over(recorder, { blockSize, maxDeltas: 1 + (seed % 3), cacheSize: 24 * 4096, highWater: Number.MAX_SAFE_INTEGER });
      const pending: Promise<void>[] = [];
      try {
        for (let k = 1; k <= DELTAS; k++) {
          const plan = planDelta(seed, k);
          const change = (blocks: readonly number[], over: readonly boolean[]) =>
            vol.change(async (tx) => {
              for (let i = 0; i < blocks.length; i++) fillImage(over[i] ? await tx.overwrite(blocks[i]) : await tx.write(blocks[i]), seed, k, blocks[i]);
            });
          if (plan.concurrent) await Promise.all(plan.changes.map((blocks, c) => change(blocks, plan.overwrite[c])));
          else for (const [c, blocks] of plan.changes.entries()) await change(blocks, plan.overwrite[c]);
          recorder.mark('closed', k);
          const open = vol.stats().delta;
          const committed = vol.commit().then(() => recorder.mark('ack', k));
          if (plan.awaitCommit) await committed;
          else {
            pending.push(committed);
            // Changes called after a commit may join its delta while the pipeline is full (group
            // commit); the next plan starts once this delta has closed, so each plan is one delta.
            while (vol.stats().delta === open) await new Promise((resolve) => setImmediate(resolve));
          }
        }
        await Promise.all(pending);
      } finally {
        await vol.close();
      }

      const blocks = new WorkloadModel(seed, 0).blocks;
      const random = seeded(seed);
      const points = [...recorder.flushBoundaries(), ...Array.from({ length: 80 }, () => Math.floor(random() * (recorder.events.length + 1)))];
      let halfWritten = 0;
      for (const [i, point] of points.entries()) {
        const image = recorder.crashImage(point, seeded(seed * 1000 + i));
        const read = new Map(blocks.map((b) => [b, image.subarray(b * blockSize, (b + 1) * blockSize)]));
        const acked = recorder.lastMark(point, 'ack') ?? 0;
        const closed = recorder.lastMark(point, 'closed') ?? 0;
        if (checkOrdered(seed, acked, closed, read).halfWritten) halfWritten++;
      }
      assert.ok(halfWritten > 0, 'some crash states cut a delta in half (the check was exercised)');
      console.log(`      ${points.length} crash states of a ${recorder.events.length}-event run: ${halfWritten} with one delta half written`);
    });
  }
});
