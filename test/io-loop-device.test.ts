import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { native } from '../src/native';
import { Device, type EngineKind } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { attachLoopDevice, blockdevGeometry, loopDeviceUnavailable, type LoopDevice } from './support/loop-device';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * Device on a real block device: a loop device over a temp file, with 512-
 * and 4096-byte logical sectors. Geometry must agree with the kernel's own
 * account (`blockdev`), data must round-trip through both engines and plain
 * fs, and what the sector size forbids must be refused before any I/O.
 */

const PAGE = 4096;
const DEVICE_BYTES = 32 << 20;

const engines = (): EngineKind[] => (native.probeIoUring() === 0 ? ['io_uring', 'threads'] : ['threads']);

function fill(page: Uint8Array, seed: number): void {
  for (let i = 0; i < page.length; i++) page[i] = (seed * 29 + i + (i >> 9)) & 0xff;
}

function readPlain(file: string, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  const fd = fs.openSync(file, 'r');
  try {
    assert.equal(fs.readSync(fd, out, 0, length, offset), length);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

describe('Device on a loop device', function () {
  let scratch: ScratchDir | undefined;
  let slab: Slab;
  const loops: LoopDevice[] = [];
  const open: Device[] = [];

  function backingFile(name: string): string {
    const file = scratch!.file(name);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DEVICE_BYTES);
    return file;
  }

  function attach(name: string, sectorSize?: number): LoopDevice {
    const loop = attachLoopDevice(backingFile(name), { sectorSize });
    loops.push(loop);
    return loop;
  }

  async function openDevice(path: string, options?: Parameters<typeof Device.open>[1]): Promise<Device> {
    const device = await Device.open(path, options);
    open.push(device);
    return device;
  }

  before(function () {
    const why = loopDeviceUnavailable();
    if (why !== undefined) {
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    scratch = makeScratchDir('loop');
    slab = Slab.alloc(PAGE, 64);
  });
  afterEach(async () => {
    for (const device of open.splice(0)) await device.close();
  });
  // Runs whether the tests passed or not: no loop device outlives the suite.
  after(async () => {
    for (const device of open.splice(0)) await device.close();
    for (const loop of loops.splice(0)) loop.detach();
    slab?.release();
    scratch?.remove();
  });

  describe('with 512-byte sectors', () => {
    let loop: LoopDevice;
    before(() => {
      loop = attach('loop512.img');
    });

    it('reports the geometry that blockdev reports', async () => {
      const device = await openDevice(loop.path);
      const kernel = blockdevGeometry(loop.path);
      const g = device.geometry;
      assert.equal(g.isBlockDevice, true);
      assert.equal(g.size, kernel.size);
      assert.equal(g.size, DEVICE_BYTES);
      assert.equal(g.logicalSectorSize, kernel.logicalSectorSize);
      assert.equal(g.logicalSectorSize, 512);
      assert.equal(g.physicalSectorSize, kernel.physicalSectorSize);
      assert.equal(g.memoryAlignment, g.logicalSectorSize);
      assert.equal(g.direct, true);
      assert.equal(device.created, false);
    });

    it('does not create or resize anything when given `size`', async () => {
      const device = await openDevice(loop.path, { size: 4096 });
      assert.equal(device.created, false);
      assert.equal(device.geometry.size, DEVICE_BYTES);
    });

    for (const writer of ['io_uring', 'threads'] as const) {
      it(`what the ${writer} engine writes, every engine and plain fs read back, and it reaches the backing file`, async function () {
        if (!engines().includes(writer)) {
          console.log('      skipped: io_uring is unavailable here');
          this.skip();
        }
        const offset = 3 * 512 + 1024 * PAGE; // 512-aligned, not page-aligned
        const pages = [0, 1, 2, 3].map((i) => slab.page(i));
        pages.forEach((p, i) => fill(p, i + writer.length));
        const expected = Buffer.concat(pages.map((p) => Buffer.from(p)));
        // Sector-sized pieces, to use the 512-byte granularity.
        const pieces = pages.flatMap((p) => [p.subarray(0, 512), p.subarray(512)]);

        const w = await openDevice(loop.path, { engine: writer });
        await w.run([{ op: 'write', offset, buffers: pieces, dsync: true }]);
        await w.flush();
        await w.close();

        assert.deepEqual(readPlain(loop.path, offset, expected.length), expected, 'plain fs on the device');
        for (const reader of engines()) {
          const r = await openDevice(loop.path, { engine: reader, readOnly: true });
          const into = [4, 5, 6, 7].map((i) => slab.page(i));
          into.forEach((p) => p.fill(0));
          await r.run([{ op: 'read', offset, buffers: into }]);
          assert.deepEqual(Buffer.concat(into), expected, `read back by the ${reader} engine`);
          await r.close();
        }
        execFileSync('blockdev', ['--flushbufs', loop.path]);
        assert.deepEqual(readPlain(loop.backingFile, offset, expected.length), expected, 'the backing file');
      });
    }

    it('refuses a request that reaches past the end of the device, before any I/O', async () => {
      const device = await openDevice(loop.path);
      await assert.rejects(device.submit([{ op: 'read', offset: DEVICE_BYTES - 512, buffers: [slab.page(0)] }]), {
        name: 'RangeError',
        message: `request 0: bytes ${DEVICE_BYTES - 512}..${DEVICE_BYTES + PAGE - 512} reach past the end of the device (${DEVICE_BYTES} bytes)`,
      });
      const last = slab.page(0);
      const results = await device.submit([{ op: 'read', offset: DEVICE_BYTES - PAGE, buffers: [last] }]);
      assert.deepEqual(results, [{ bytes: PAGE }]);
    });

    for (const engine of ['io_uring', 'threads'] as const) {
      it(`gives each request of a batch its own result: writes to a device turned read-only fail with EPERM, reads succeed (${engine})`, async function () {
        if (!engines().includes(engine)) {
          console.log('      skipped: io_uring is unavailable here');
          this.skip();
        }
        const device = await openDevice(loop.path, { engine });
        execFileSync('blockdev', ['--setro', loop.path]);
        try {
          const [a, b, c] = [0, 1, 2].map((i) => slab.page(i));
          const results = await device.submit([
            { op: 'read', offset: 0, buffers: [a] },
            { op: 'write', offset: PAGE, buffers: [b] },
            { op: 'read', offset: 2 * PAGE, buffers: [c] },
          ]);
          assert.deepEqual(results[0], { bytes: PAGE });
          assert.deepEqual(results[2], { bytes: PAGE });
          assert.equal(results[1].bytes, 0);
          const error = results[1].error!;
          assert.ok(error instanceof Error);
          assert.equal(error.code, 'EPERM');
          assert.equal(error.errno, -1);
          assert.equal(error.syscall, 'pwritev');
          assert.equal(error.path, loop.path);
          assert.equal(error.message, `EPERM: operation not permitted, pwritev '${loop.path}'`);
          await assert.rejects(device.run([{ op: 'write', offset: PAGE, buffers: [b] }]), { code: 'EPERM', syscall: 'pwritev' });
        } finally {
          execFileSync('blockdev', ['--setrw', loop.path]);
        }
        await device.run([{ op: 'write', offset: PAGE, buffers: [slab.page(1)] }]);
      });
    }
  });

  describe('with 4096-byte sectors (losetup --sector-size 4096)', () => {
    let loop: LoopDevice;
    before(() => {
      loop = attach('loop4096.img', 4096);
    });

    it('reports 4096-byte logical sectors, as blockdev does', async () => {
      const device = await openDevice(loop.path);
      const kernel = blockdevGeometry(loop.path);
      assert.equal(kernel.logicalSectorSize, 4096);
      assert.equal(device.geometry.logicalSectorSize, 4096);
      assert.equal(device.geometry.physicalSectorSize, kernel.physicalSectorSize);
      assert.equal(device.geometry.memoryAlignment, 4096);
      assert.equal(device.geometry.size, kernel.size);
    });

    it('refuses 512-aligned offsets, lengths and addresses with a RangeError, before any I/O', async () => {
      const device = await openDevice(loop.path);
      const page = slab.page(0);
      await assert.rejects(device.submit([{ op: 'write', offset: 512, buffers: [page] }]), {
        name: 'RangeError',
        message: 'request 0: offset 512 is not a multiple of the sector size 4096',
      });
      await assert.rejects(device.submit([{ op: 'write', offset: 0, buffers: [page.subarray(0, 512)] }]), {
        name: 'RangeError',
        message: 'request 0: buffer 0 length 512 is not a positive multiple of the sector size 4096',
      });
      const twoPages = Buffer.from(slab.memory, 0, 2 * PAGE);
      await assert.rejects(device.submit([{ op: 'write', offset: 0, buffers: [twoPages.subarray(512, 512 + PAGE)] }]), {
        name: 'RangeError',
        message: 'request 0: buffer 0 address is not aligned to 4096 bytes (use slab memory)',
      });
    });

    it('round-trips page-aligned slab memory through every engine (slabs are 4096-aligned)', async () => {
      for (const engine of engines()) {
        const device = await openDevice(loop.path, { engine });
        const pages = Array.from({ length: 8 }, (_, i) => slab.page(8 + i));
        pages.forEach((p, i) => fill(p, 100 + i + engine.length));
        await device.run(pages.map((p, i) => ({ op: 'write' as const, offset: (i * 7 + 1) * PAGE, buffers: [p] })));
        await device.flush();
        const back = Array.from({ length: 8 }, (_, i) => slab.page(16 + i));
        back.forEach((p) => p.fill(0));
        await device.run(back.map((p, i) => ({ op: 'read' as const, offset: (i * 7 + 1) * PAGE, buffers: [p] })));
        for (let i = 0; i < 8; i++) {
          assert.deepEqual(back[i], pages[i], `${engine}: block ${i}`);
          assert.deepEqual(readPlain(loop.path, (i * 7 + 1) * PAGE, PAGE), Buffer.from(pages[i]), `${engine}: plain fs, block ${i}`);
        }
        await device.close();
      }
    });
  });
});
