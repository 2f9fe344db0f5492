import assert from 'node:assert/strict';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { until } from './support/volumes';

/**
 * G6 for checkpoints: a checkpoint is taken lazily, off the commit path, so
 * its failure has no commit of its own to fail. It fails the volume at once:
 * every later commit (an empty one too), change and close rejects with it,
 * rather than resolving over a journal that can no longer free its log.
 */

const B = 4096;

describe('a failed checkpoint', () => {
  it('G6: fails the volume at once: an empty commit, a change and close() reject with it', async () => {
    const memory = new MemoryDevice({ size: 1 << 20 });
    const device = new FaultDevice(memory);
    // The smallest log: a delta of one block takes 3 of its 8 blocks, so the second delta passes half of it.
    const vol = await Volume.mount(device, { journal: true, format: true, logSize: 8 * B, highWater: 1 << 30 });
    let closed = false;
    try {
      assert.equal(vol.stats().journal?.checkpoints, 0);
      // Each append goes out in one request written with RWF_DSYNC: the next flush is the checkpoint's.
      device.failNextFlush();
      for (let delta = 1; delta <= 2; delta++) {
        await vol.change(async (tx) => (await tx.write(delta)).fill(delta));
        await vol.commit();
      }
      await until(() => device.injected.length > 0, 'the checkpoint flushed and failed');
      const cause = device.injected[0];
      await until(() => vol.failure !== undefined, 'the volume failed');
      assert.equal(vol.failure, cause, 'the volume failed with the checkpoint\'s error');
      await assert.rejects(vol.commit(), (error) => error === cause);
      await assert.rejects(
        vol.change(() => undefined),
        { code: 'ERR_VOLUME_FAILED', cause },
      );
      closed = true;
      await assert.rejects(vol.close(), (error) => error === cause);
    } finally {
      if (!closed) await vol.close().catch(() => undefined);
    }
  });

  it('G6: a checkpoint that fails at close() makes close() reject with it', async () => {
    const device = new FaultDevice(new MemoryDevice({ size: 1 << 20 }));
    const vol = await Volume.mount(device, { journal: true, format: true, logSize: 64 * B, highWater: 1 << 30 });
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    await vol.commit();
    device.failNextFlush();
    await assert.rejects(vol.close(), { code: 'EIO', syscall: 'fdatasync' });
  });
});
