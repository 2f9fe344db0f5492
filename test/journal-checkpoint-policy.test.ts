import assert from 'node:assert/strict';
import { open, type Volume } from '../src/volume';
import { until, volumesPerTest } from './support/volumes';

/**
 * When the journal checkpoints (checkpoints.ts): lazily, once the log is
 * more than half full at a delta's home writes, or when an append waits for
 * log space; not at exactly half, not before. A checkpoint costs two flushes
 * and a superblock write: one taken too early is wasted, one not taken
 * stalls the log.
 */

const MiB = 1 << 20;
const B = 4096;

describe('journal checkpoint policy', () => {
  const volumes = volumesPerTest();

  async function volume(logBlocks: number): Promise<Volume> {
    const vol = await open(volumes.file(), { size: 4 * MiB, journal: true, logSize: logBlocks * B, highWater: 1 << 30 });
    volumes.track(vol);
    return vol;
  }

  /** Commits one delta of these blocks and waits until it is at home (and any checkpoint it asked for is asked). */
  async function commitAtHome(vol: Volume, blocks: readonly number[], tag: number): Promise<void> {
    await vol.change(async (tx) => {
      for (const b of blocks) (await tx.write(b)).fill(tag);
    });
    await vol.commit();
    await until(() => vol.stats().deltasInFlight === 0, 'the delta at home');
  }

  function journal(vol: Volume) {
    const j = vol.stats().journal;
    assert.ok(j);
    return j;
  }

  it('checkpoints at the home writes of the delta that takes the log past half, not at half', async () => {
    // A delta of one block takes 3 log blocks (descriptor, image, commit record): 3, 6 (half of 12), then 9.
    const vol = await volume(12);
    const seen: number[] = [];
    for (let tag = 1; tag <= 3; tag++) {
      await commitAtHome(vol, [tag], tag);
      await until(() => journal(vol).checkpoints === 0 || journal(vol).checkpointedDelta > 0, 'a checkpoint asked for is taken');
      seen.push(journal(vol).checkpoints);
    }
    assert.deepEqual(seen, [0, 0, 1]);
    assert.equal(journal(vol).checkpointedDelta, vol.stats().durableDelta, 'it names the delta at home');
    assert.equal(journal(vol).logFullWaits, 0, 'no append waited');
    assert.equal(journal(vol).logBlocksUsed, 0, 'the log is free again');
  });

  it('checkpoints when an append waits for log space even though the log is not past half', async () => {
    const vol = await volume(12);
    // Four blocks: 6 log blocks, exactly half: no checkpoint at its home writes.
    await commitAtHome(vol, [0, 1, 2, 3], 1);
    assert.equal(journal(vol).checkpoints, 0);
    assert.equal(journal(vol).logBlocksUsed, 6);
    // Five blocks need 7, and 6 are free: the append waits, and the wait asks for the checkpoint that frees the log.
    await commitAtHome(vol, [4, 5, 6, 7, 8], 2);
    assert.equal(journal(vol).logFullWaits, 1, 'the append waited once');
    // That checkpoint, then the second delta's own: 7 of 12 is past half.
    await until(() => journal(vol).checkpointedDelta === vol.stats().durableDelta, 'the second delta checkpointed');
    assert.equal(journal(vol).checkpoints, 2);
    for (const b of [0, 3]) assert.equal((await vol.read(b))[0], 1);
    for (const b of [4, 8]) assert.equal((await vol.read(b))[0], 2);
  });
});
