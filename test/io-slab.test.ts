import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { native, isNativeErrno, type NativeEngine } from '../src/native';
import { Slab, copyPage } from '../src/io/slab';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * G7's foundation: page slabs are page-aligned memory outside the V8 heap,
 * counted as external memory, freed at once by release() and otherwise by
 * the garbage collector; copyPage copies between them.
 */

const root = path.resolve(__dirname, '..');
const MiB = 1 << 20;

describe('page slabs', () => {
  let scratch: ScratchDir;
  before(() => {
    scratch = makeScratchDir('slab');
  });
  after(() => scratch.remove());

  it('hands out pages whose addresses are aligned to the system page: an engine demanding that alignment takes every page', async () => {
    // A raw engine over an O_DIRECT file, asked to demand page alignment of
    // every buffer address: it refuses anything else with a RangeError.
    const opened = native.open(scratch.file('aligned.img'), { readOnly: false, direct: true, create: true, size: MiB });
    assert.ok(!isNativeErrno(opened));
    const engine = native.createEngine({
      fd: opened.fd,
      kind: 'threads',
      queueDepth: 4,
      sectorSize: opened.logicalSectorSize,
      memoryAlignment: native.pageSize,
      size: opened.size,
      readOnly: false,
    }) as NativeEngine;
    const slabs = [Slab.alloc(native.pageSize, 8), Slab.alloc(native.pageSize * 2, 3), Slab.alloc(1 << 20, 1)];
    try {
      const buffers = slabs.flatMap((s) => Array.from({ length: s.pageCount }, (_, i) => s.page(i).subarray(0, native.pageSize)));
      const results = await new Promise<number[]>((resolve) =>
        engine.submit(
          buffers.map((b, i) => ({ op: 1, offset: i * native.pageSize, buffers: [b], dsync: false })),
          resolve,
        ),
      );
      assert.deepEqual([...results], new Array(buffers.length).fill(native.pageSize));
      // And the check is real: one sector past a page start is refused.
      const misaligned = slabs[0].page(0).subarray(opened.logicalSectorSize, opened.logicalSectorSize * 2);
      assert.throws(() => engine.submit([{ op: 1, offset: 0, buffers: [misaligned], dsync: false }], () => undefined), {
        name: 'RangeError',
        message: `request 0: buffer 0 address is not aligned to ${native.pageSize} bytes (use slab memory)`,
      });
    } finally {
      engine.close();
      native.close(opened.fd);
      for (const s of slabs) s.release();
    }
  });

  it('lives outside the V8 heap, counted as external memory, until release() gives it back', () => {
    const size = 64 * MiB;
    const before = process.memoryUsage();
    const slab = Slab.alloc(4096, size / 4096);
    const during = process.memoryUsage();
    slab.page(0).fill(1);
    slab.page(slab.pageCount - 1).fill(2);
    assert.ok(during.external - before.external >= size, `external grew by ${during.external - before.external}, not ${size}`);
    assert.ok(during.heapUsed - before.heapUsed < MiB, `the V8 heap grew by ${during.heapUsed - before.heapUsed}`);
    assert.equal(slab.byteLength, size);
    slab.release();
    const after = process.memoryUsage();
    assert.ok(during.external - after.external >= size, `release() gave back ${during.external - after.external} of ${size} bytes`);
  });

  it('is freed by the garbage collector when dropped (child process with --expose-gc)', () => {
    // 32 slabs of 8 MiB, each touched, each dropped: 256 MiB in all.
    const script = `
      const { Slab } = require(${JSON.stringify(path.join(root, 'src/io/slab.ts'))});
      const settle = () => new Promise((resolve) => setImmediate(resolve));
      function churn(i) {
        const slab = Slab.alloc(4096, 2048);
        new Uint8Array(slab.memory).fill(i + 1);
      }
      (async () => {
        global.gc();
        await settle();
        const before = process.memoryUsage();
        for (let i = 0; i < 32; i++) churn(i);
        const dropped = process.memoryUsage();
        for (let i = 0; i < 10; i++) { global.gc(); await settle(); }
        const after = process.memoryUsage();
        console.log(JSON.stringify({ before, dropped, after }));
      })();`;
    const child = spawnSync(process.execPath, ['--expose-gc', '-r', 'ts-node/register/transpile-only', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(child.status, 0, `child failed (${child.signal ?? child.status}): ${child.stderr}`);
    const { before, dropped, after } = JSON.parse(child.stdout) as Record<'before' | 'dropped' | 'after', NodeJS.MemoryUsage>;
    // The slabs were really held (the measure can see them) before the collector freed them.
    assert.ok(dropped.external - before.external >= 8 * MiB, `external memory grew by only ${dropped.external - before.external} bytes`);
    assert.ok(after.external - before.external < 8 * MiB, `external memory stayed ${after.external - before.external} bytes above its start`);
    assert.ok(after.rss - before.rss < 64 * MiB, `RSS stayed ${after.rss - before.rss} bytes above its start after 256 MiB was dropped`);
  });

  it('empties every view on release(), refuses new views, and a second release is harmless', () => {
    const slab = Slab.alloc(4096, 4);
    const view = slab.page(2);
    view.fill(7);
    slab.release();
    assert.equal(view.length, 0);
    assert.equal(slab.byteLength, 0);
    assert.equal(slab.memory.byteLength, 0);
    assert.throws(() => slab.page(0), { name: 'RangeError', message: 'slab has been released' });
    slab.release();
  });

  it('cuts pages of any power-of-two size from 512 bytes to 1 MiB, each its own window', () => {
    for (const pageSize of [512, 1024, 4096, 65536, 1 << 20]) {
      const count = Math.max(1, Math.ceil((2 * native.pageSize) / pageSize));
      const slab = Slab.alloc(pageSize, count);
      try {
        const pages = Array.from({ length: count }, (_, i) => slab.page(i));
        pages.forEach((p, i) => p.fill(i + 1));
        for (let i = 0; i < count; i++) {
          assert.equal(pages[i].length, pageSize);
          assert.equal(pages[i].byteOffset, i * pageSize);
          assert.ok(pages[i].every((b) => b === i + 1), `page ${i} of ${pageSize} bytes was overwritten by a neighbour`);
        }
      } finally {
        slab.release();
      }
    }
  });

  it('takes any page count: small pages that do not fill the last system page still get a slab', () => {
    // 3 pages of 512 bytes are 1536 bytes: mmap needs a whole system page.
    const slab = Slab.alloc(512, 3);
    try {
      assert.equal(slab.pageCount, 3);
      assert.equal(slab.byteLength % native.pageSize, 0);
      assert.ok(slab.byteLength >= 3 * 512);
      slab.page(2).fill(7);
      assert.ok(slab.page(2).every((b) => b === 7));
      assert.throws(() => slab.page(3), RangeError);
    } finally {
      slab.release();
    }
  });

  it('refuses bad page sizes, counts and indexes with RangeErrors', () => {
    for (const pageSize of [0, 256, 1000, 3000, 2 << 20, 4096.5, NaN, '4096' as unknown as number]) {
      assert.throws(() => Slab.alloc(pageSize, 1), {
        name: 'RangeError',
        message: `pageSize must be a power of two from 512 to 1048576, got ${String(pageSize)}`,
      });
    }
    for (const pageCount of [0, -1, 1.5, Infinity, '2' as unknown as number]) {
      assert.throws(() => Slab.alloc(4096, pageCount), { name: 'RangeError', message: `pageCount must be a positive integer, got ${String(pageCount)}` });
    }
    const slab = Slab.alloc(4096, 2);
    try {
      for (const index of [-1, 2, 0.5, NaN]) {
        assert.throws(() => slab.page(index), { name: 'RangeError', message: `page index must be an integer from 0 to 1, got ${String(index)}` });
      }
    } finally {
      slab.release();
    }
  });

  describe('copyPage', () => {
    it('copies a page between slabs, and between a slab and a plain Buffer', () => {
      const a = Slab.alloc(4096, 2);
      const b = Slab.alloc(4096, 2);
      try {
        const source = a.page(1);
        for (let i = 0; i < source.length; i++) source[i] = (i * 13) & 0xff;
        const target = b.page(0);
        copyPage(target, source);
        assert.deepEqual(target, source);
        const plain = Buffer.alloc(4096);
        copyPage(plain, source);
        assert.deepEqual(plain, source);
        assert.ok(b.page(1).every((x) => x === 0), 'nothing beyond the target was written');
      } finally {
        a.release();
        b.release();
      }
    });

    it('copies overlapping views as memmove does', () => {
      const slab = Slab.alloc(4096, 1);
      try {
        const page = slab.page(0);
        for (let i = 0; i < page.length; i++) page[i] = i & 0xff;
        const expected = Buffer.from(page);
        expected.copyWithin(512, 0, 3584);
        copyPage(page.subarray(512), page.subarray(0, 3584));
        assert.deepEqual(page, expected);
      } finally {
        slab.release();
      }
    });

    it('refuses views of different lengths and non-byte views', () => {
      assert.throws(() => copyPage(Buffer.alloc(4096), Buffer.alloc(512)), {
        name: 'RangeError',
        message: 'copy: target (4096 bytes) and source (512 bytes) differ in length',
      });
      assert.throws(() => copyPage(new Float64Array(512) as unknown as Uint8Array, Buffer.alloc(4096)), {
        name: 'TypeError',
        message: 'copy: target and source must be Uint8Arrays or Buffers',
      });
    });
  });
});
