import { strict as assert } from 'node:assert';
import { Device } from '../src/io/device';
import { allocBlocks } from '../src/journal/block-memory';
import { JournalWriter } from '../src/journal/journal-writer';
import { readSuperblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';
import { open } from '../src/volume';
import { TempDir } from './support/temp';

/**
 * Delta numbers are unsigned 32-bit and wrap from 2^32 - 1 to 0
 * (src/delta/number.ts); the journal records them on disk and replay expects
 * them to grow. A volume that has lived through 2^32 deltas must go on
 * committing, and reopen with what it committed.
 */

const B = 4096;
const LAST = 2 ** 32 - 1;

describe('journal: the 32-bit delta number wraps', () => {
  let temp: TempDir;
  beforeEach(() => (temp = new TempDir()));
  afterEach(() => temp.remove());

  it('G3, G5: commits go on across delta 2^32 - 1 -> 0, and a reopen keeps every one of them', async () => {
    const path = temp.file();
    // A volume whose history has reached delta 2^32 - 2, in its log (replay takes it home): written by the journal itself.
    const device = await Device.open(path, { size: 4 << 20 });
    await formatVolume(device, { blockSize: B, logBlocks: 64 });
    const writer = new JournalWriter(device, (await readSuperblock(device)).superblock);
    const slab = allocBlocks(B, 1);
    slab.page(0).fill(0xee);
    await writer.appendDelta(LAST - 1, [{ home: 0, image: slab.page(0) }]);
    slab.release();
    await device.close();

    let vol = await open(path, { journal: true });
    assert.deepEqual(await vol.read(0), Buffer.alloc(B, 0xee));
    const numbers: number[] = [];
    for (let i = 1; i <= 3; i++) {
      await vol.change(async (tx) => (await tx.write(i)).fill(i));
      numbers.push(await vol.commit());
    }
    assert.deepEqual(numbers, [LAST, 0, 1], 'the numbers wrap as src/delta/number.ts says');
    await vol.close();

    vol = await open(path, { journal: true });
    try {
      for (let i = 1; i <= 3; i++) assert.deepEqual(await vol.read(i), Buffer.alloc(B, i), `block ${i}, committed in delta ${numbers[i - 1]}`);
      await vol.change(async (tx) => (await tx.write(4)).fill(4));
      await vol.commit();
    } finally {
      await vol.close();
    }
  });
});
