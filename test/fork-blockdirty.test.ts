import assert from 'node:assert/strict';
import { fileBytes, realVolume, realVolumesPerTest, settles, until, type RealVolume } from './support/volumes';

// The fork runs against the real Device (O_DIRECT on a temp file). The
// FaultDevice in front of it only holds writes (or reads) in flight on
// command, to catch a delta in the middle of its writeout.

const SIZE = 1 << 20;

function pattern(blockSize: number, value: number): Buffer {
  return Buffer.alloc(blockSize, value);
}

describe('blockdirty and the buffer fork', () => {
  const volumes = realVolumesPerTest();

  async function volume(options: Parameters<typeof realVolume>[2] = {}): Promise<RealVolume> {
    return volumes.open(SIZE, { cacheSize: 1 << 20, ...options });
  }

  for (const blockSize of [4096, 1024, 512]) {
    describe(`blockSize ${blockSize} on 4096-byte pages`, () => {
      it('G1, G2: a write of a block under writeout forks at once, and the earlier delta writes its image', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(0)).fill(0xa1));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        // The writeout is held until released: a write that waited for it would never end.
        assert.equal(await settles(vol.change(async (tx) => (await tx.write(0)).fill(0xb2))), true, 'the write did not wait for the writeout in flight (G2)');
        assert.ok(device.heldRequests() > 0, 'and the writeout was still in flight when it ended');
        assert.equal(vol.stats().forks, 1);
        assert.equal(vol.stats().pagesFrozen, 1);
        assert.deepEqual(await vol.read(0), pattern(blockSize, 0xb2), 'reads see the latest write');

        release();
        assert.equal(await first, 1);
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0xa1), 'delta 1 wrote its own image (G1)');
        assert.equal(await vol.commit(), 2);
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0xb2));
      });

      it('G7: the frozen copy is freed once its writeout is done', async () => {
        const { vol, device } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(3)).fill(1));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');
        await vol.change(async (tx) => (await tx.write(3)).fill(2));
        assert.equal(vol.stats().pagesFrozen, 1);
        const cached = vol.stats().pagesCached;
        release();
        await first;
        assert.equal(vol.stats().pagesFrozen, 0);
        assert.equal(vol.stats().pagesCached, cached, 'the copy is the cached page; only the frozen original went');
      });

      it('G1: a write into a tx.read copy changes neither the cache nor a frozen image', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(1)).fill(7));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');
        await vol.change(async (tx) => (await tx.read(1)).fill(9));
        release();
        await first;
        assert.deepEqual(fileBytes(path, blockSize, blockSize), pattern(blockSize, 7));
        assert.deepEqual(await vol.read(1), pattern(blockSize, 7));
        assert.equal(vol.stats().forks, 0, 'a read never forks');
      });
    });
  }

  for (const blockSize of [512, 1024]) {
    describe(`several blocks per page (blockSize ${blockSize})`, () => {
      it('G1: forking one block carries its dirty neighbours into the current delta', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => {
          for (const b of [0, 1, 2]) (await tx.write(b)).fill(0x10 + b);
        });
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        await vol.change(async (tx) => (await tx.write(1)).fill(0x21));
        assert.equal(vol.stats().forks, 1);
        release();
        await first;
        const afterFirst = vol.stats().bytesWritten;
        assert.deepEqual(fileBytes(path, 0, 3 * blockSize), Buffer.concat([0x10, 0x11, 0x12].map((v) => pattern(blockSize, v))), 'delta 1 image (G1)');

        await vol.commit();
        assert.equal(vol.stats().bytesWritten - afterFirst, 3 * blockSize, 'delta 2 wrote the forked block and both carried neighbours');
        assert.deepEqual(fileBytes(path, 0, 3 * blockSize), Buffer.concat([0x10, 0x21, 0x12].map((v) => pattern(blockSize, v))));
      });

      it('a fork that happened while another task waited on the page lock lets it exit early', async () => {
        const { vol, device, path } = await volume({ blockSize });
        // Block 0 dirty in delta 1, the rest of its page never read (EMPTY).
        await vol.change(async (tx) => (await tx.overwrite(0)).fill(0x31));
        const releaseWrites = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        const releaseReads = device.hold('read');
        await vol.change(async (tx) => {
          // Task A: block 3 must be read, so A takes the page lock and holds it across the read.
          const a = tx.write(3);
          await until(() => device.heldRequests('read') > 0, 'A reading under the page lock');
          // Task B: block 0 is dirty in delta 1, so B must fork, and waits for the lock.
          const b = tx.write(0);
          assert.equal(await settles(b), false, 'B waits for the page lock');
          releaseReads();
          const [viewA, viewB] = await Promise.all([a, b]);
          viewA.fill(0x43);
          viewB.fill(0x40);
          assert.equal(viewA.buffer, viewB.buffer, 'both write the one copy');
        });
        assert.equal(vol.stats().forks, 1, 'A forked; B found the copy and did not fork again');

        releaseWrites();
        await first;
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0x31), 'delta 1 image (G1)');
        await vol.commit();
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0x40));
        assert.deepEqual(fileBytes(path, 3 * blockSize, blockSize), pattern(blockSize, 0x43));
      });

      it('writes to clean neighbours of a page dirty in this delta stay in place', async () => {
        const { vol } = await volume({ blockSize });
        await vol.change(async (tx) => {
          const first = await tx.write(0);
          const second = await tx.write(1);
          assert.equal(first.buffer, second.buffer);
          assert.equal(second.byteOffset, first.byteOffset + blockSize);
        });
        assert.equal(vol.stats().forks, 0);
        assert.equal(vol.stats().pagesDirty, 1);
      });
    });
  }

  it('G1: a delta queued behind another (not yet writing) is forked too, and writes its own image', async () => {
    const { vol, device, path } = await volume({ blockSize: 4096, maxDeltas: 2 });
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    await vol.change(async (tx) => (await tx.write(5)).fill(2));
    const second = vol.commit();
    await until(() => vol.stats().delta === 3, 'delta 2 closed');
    await vol.change(async (tx) => (await tx.write(5)).fill(3));
    assert.equal(vol.stats().forks, 1, 'the page of delta 2, queued for writeout, forked');
    release();
    assert.equal(await first, 1);
    assert.equal(await second, 2);
    assert.deepEqual(fileBytes(path, 5 * 4096, 4096), pattern(4096, 2), 'delta 2 image (G1)');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 5 * 4096, 4096), pattern(4096, 3));
  });

  it('fork: false waits for the writeout instead (stable pages), and keeps G1', async () => {
    const { vol, device, path } = await volume({ blockSize: 4096, fork: false });
    await vol.change(async (tx) => (await tx.write(2)).fill(0x51));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    const change = vol.change(async (tx) => (await tx.write(2)).fill(0x52));
    assert.equal(await settles(change), false, 'the write waits while delta 1 is being written');
    release();
    await change;
    assert.equal(vol.stats().forks, 0);
    assert.equal(vol.stats().stableWaits, 1);
    await first;
    assert.deepEqual(fileBytes(path, 2 * 4096, 4096), pattern(4096, 0x51), 'delta 1 image (G1)');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 2 * 4096, 4096), pattern(4096, 0x52));
  });

  it('overwrite gives a zero-filled block without reading it', async () => {
    const { vol, path } = await volume({ blockSize: 4096 });
    await vol.change(async (tx) => (await tx.write(4)).fill(0xee));
    await vol.commit();
    const reads = vol.stats().pagesRead;
    await vol.change(async (tx) => {
      const view = await tx.overwrite(9);
      assert.deepEqual(view, Buffer.alloc(4096));
      view.fill(0x99);
      assert.deepEqual(await tx.overwrite(4), Buffer.alloc(4096), 'zero-filled even when cached');
    });
    assert.equal(vol.stats().pagesRead, reads, 'nothing was read');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 9 * 4096, 4096), pattern(4096, 0x99));
    assert.deepEqual(fileBytes(path, 4 * 4096, 4096), Buffer.alloc(4096));
  });
});
