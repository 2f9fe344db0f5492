import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from '../src/io/device';
import { readSuperblock } from '../src/journal/superblock';
import { formatVolume, planLayout, type FormatOptions } from '../src/journal/volume-format';
import { FaultDevice } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';

/**
 * formatVolume's refusals, each before writing anything, and planLayout's
 * choices at their bounds: the default reserve (an eighth of the device,
 * from one to four times the log, at most a quarter of the home area), the
 * smallest device a reserve leaves room in.
 */

const MiB = 1 << 20;

describe('journal format: what it refuses and where the layout\'s bounds are', () => {
  let dir: string;
  const open: Device[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-format-checks-'));
  });
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function device(size = 2 * MiB): Promise<FaultDevice> {
    const d = await Device.open(join(dir, `vol-${open.length}.img`), { size });
    open.push(d);
    return new FaultDevice(d);
  }

  it('refuses options that are not an object, or a block size that is not a power of two from 512 to 65536, before any I/O', async () => {
    const d = await device();
    await assert.rejects(formatVolume(d, null as unknown as FormatOptions), { name: 'TypeError', message: 'options must be an object, got null' });
    await assert.rejects(formatVolume(d, 4096 as unknown as FormatOptions), { name: 'TypeError', message: 'options must be an object, got 4096' });
    for (const blockSize of [256, 131072, 1000, 512.5]) {
      await assert.rejects(formatVolume(d, { blockSize }), { name: 'RangeError', message: `blockSize must be a power of two from 512 to 65536, got ${blockSize}` }, String(blockSize));
    }
    assert.equal(d.writes + d.reads, 0);
    // The largest block size is taken.
    const sb = await formatVolume(d, { blockSize: 65536, logBlocks: 8 });
    assert.equal(sb.blockSize, 65536);
  });

  it('refuses a block size that is not a multiple of the device\'s sector', async () => {
    const memory = new MemoryDevice({ size: 2 * MiB, sectorSize: 4096, path: 'four-k' });
    await assert.rejects(formatVolume(memory, { blockSize: 2048 }), { name: 'RangeError', message: "blockSize 2048 is not a multiple of the sector size 4096 of 'four-k'" });
    assert.equal((await formatVolume(memory, { blockSize: 4096 })).sectorSize, 4096);
  });

  it('refuses an overwrite that is not a boolean, a version other than 1 or 2, a reserve for version 1 or one under a block', async () => {
    const d = await device();
    await assert.rejects(formatVolume(d, { blockSize: 4096, overwrite: 'yes' as unknown as boolean }), { name: 'TypeError', message: 'overwrite must be a boolean, got "yes"' });
    await assert.rejects(formatVolume(d, { blockSize: 4096, version: 3 as 2 }), { name: 'RangeError', message: 'version must be 1 or 2, got 3' });
    await assert.rejects(formatVolume(d, { blockSize: 4096, version: 1, reserveBlocks: 8 }), { name: 'RangeError', message: 'reserveBlocks goes with version 2 only' });
    for (const reserveBlocks of [0, -1, 1.5]) {
      await assert.rejects(formatVolume(d, { blockSize: 4096, version: 2, reserveBlocks }), { name: 'RangeError', message: `reserveBlocks must be a positive integer, got ${reserveBlocks}` });
    }
    assert.equal(d.writes, 0);
    const sb = await formatVolume(d, { blockSize: 4096, version: 2, reserveBlocks: 1 });
    assert.equal(sb.physicalBlocks - sb.blockCount, 1, 'a reserve of one block');
  });

  it('a read error while looking for an existing volume fails the format; it is not taken for "no volume"', async () => {
    const inner = await Device.open(join(dir, 'unreadable.img'), { size: 2 * MiB });
    open.push(inner);
    const d = new FaultDevice(inner, { failRead: 0 });
    await assert.rejects(formatVolume(d, { blockSize: 4096 }), { code: 'EIO', syscall: 'preadv' });
    assert.equal(d.writes, 0, 'nothing written');
    await assert.rejects(readSuperblock(inner), { code: 'ERR_NOT_A_VOLUME' });
  });

  it('the default reserve: an eighth of the device, at least the log, at most four times it and a quarter of the home area', () => {
    const B = 4096;
    const reserveOf = (blocks: number, log: number) => {
      const layout = planLayout(blocks * B, B, log, 2);
      return layout.physicalBlocks - layout.blockCount;
    };
    assert.equal(reserveOf(8000, 300), 1000, 'an eighth of 8000');
    assert.equal(reserveOf(8000, 1500), 1500, 'the log, more than an eighth');
    assert.equal(reserveOf(80000, 200), 800, 'four times the log, less than an eighth');
    // A log of most of the device: the home area's quarter binds.
    assert.equal(reserveOf(1000, 800), Math.floor((1000 - 2 - 800) / 4));
  });

  it('the smallest home area a reserve leaves room in holds one data block; one block less is refused, naming the reserve', () => {
    const B = 4096;
    const reserve = 16;
    // Two superblocks, a log of 8, the reserve, a map block, a summary block and one data block.
    const blocks = 2 + 8 + reserve + 1 + 1 + 1;
    const layout = planLayout(blocks * B, B, 8, 2, reserve);
    assert.deepEqual([layout.blockCount, layout.mapBlocks, layout.summaryBlocks, layout.physicalBlocks], [1, 1, 1, 1 + reserve]);
    assert.throws(() => planLayout((blocks - 1) * B, B, 8, 2, reserve), {
      name: 'RangeError',
      message: `a device of ${(blocks - 1) * B} bytes has ${blocks - 1} blocks of ${B}: too few for 2 superblocks, a log of 8 blocks, a reserve of ${reserve} blocks, the block map and any data`,
    });
  });

  it('refuses a version 2 volume of more physical blocks than a map entry can name', () => {
    const B = 512;
    assert.throws(() => planLayout(2 ** 42, B, 1024, 2, 8), { name: 'RangeError', message: /^a volume of version 2 holds at most 4294967294 physical blocks; this one would need \d+: use a larger block size$/ });
    assert.equal(planLayout(2 ** 42, 4096, 1024, 2, 8).version, 2, 'at 4 KiB blocks it fits');
  });
});
