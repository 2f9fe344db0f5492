import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { native } from '../src/native';
import { Device, type EngineKind } from '../src/io/device';
import { systemError } from '../src/io/errors';
import { Slab } from '../src/io/slab';
import type { IoRequest } from '../src/io/request';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * The engines behind Device: batched vectored reads and writes, per-request
 * results, dsync and flush, with real O_DIRECT files. Whatever one engine
 * writes, the other engine and plain buffered `fs` read back unchanged.
 */

const PAGE = 4096;
const ENGINES: readonly EngineKind[] = ['io_uring', 'threads'];

/** Bytes that differ with the seed and with every position, so a misplaced block shows. */
function pattern(seed: number, length: number, start = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const at = start + i;
    out[i] = (seed * 37 + Math.floor(at / 512) * 11 + at) & 0xff;
  }
  return out;
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

function skipWithoutIoUring(context: Mocha.Context, engine: EngineKind): void {
  const probe = native.probeIoUring();
  if (engine === 'io_uring' && probe !== 0) {
    console.log(`      skipped: io_uring is unavailable here (${systemError(probe, 'io_uring_setup').message})`);
    context.skip();
  }
}

describe('io engines (O_DIRECT files)', () => {
  let scratch: ScratchDir;
  let slab: Slab;
  const open: Device[] = [];

  async function openDevice(file: string, options: Parameters<typeof Device.open>[1]): Promise<Device> {
    const device = await Device.open(file, options);
    open.push(device);
    return device;
  }

  before(() => {
    scratch = makeScratchDir('engines');
    slab = Slab.alloc(PAGE, 256);
  });
  afterEach(async () => {
    for (const device of open.splice(0)) await device.close();
  });
  after(() => {
    slab.release();
    scratch.remove();
  });

  for (const writer of ENGINES) {
    for (const reader of ENGINES) {
      it(`what the ${writer} engine writes reads back equal through the ${reader} engine and through plain fs`, async function () {
        skipWithoutIoUring(this, writer);
        skipWithoutIoUring(this, reader);
        const file = scratch.file(`${writer}-to-${reader}.img`);
        const size = 1 << 20;
        const seed = writer.length * 3 + reader.length;
        const expected = pattern(seed, 64 * PAGE, 8 * PAGE);

        const w = await openDevice(file, { size, engine: writer });
        assert.equal(w.engine, writer);
        const pages = Array.from({ length: 64 }, (_, i) => slab.page(i));
        pages.forEach((p, i) => expected.copy(p, 0, i * PAGE, (i + 1) * PAGE));
        // One request per 8 pages, each gathered from 8 separate slab pages.
        const writes: IoRequest[] = [];
        for (let r = 0; r < 8; r++) writes.push({ op: 'write', offset: (8 + r * 8) * PAGE, buffers: pages.slice(r * 8, r * 8 + 8) });
        await w.run(writes);
        await w.flush();
        await w.close();

        assert.deepEqual(readPlain(file, 8 * PAGE, 64 * PAGE), expected, 'plain fs reads what was written');

        const r = await openDevice(file, { engine: reader });
        assert.equal(r.engine, reader);
        const into = Array.from({ length: 64 }, (_, i) => slab.page(64 + i));
        into.forEach((p) => p.fill(0xee));
        await r.run([{ op: 'read', offset: 8 * PAGE, buffers: into }]);
        assert.deepEqual(Buffer.concat(into), expected, `the ${reader} engine reads what ${writer} wrote`);
        // The untouched head of the sparse file reads as zeros.
        const head = slab.page(200);
        head.fill(0xee);
        await r.run([{ op: 'read', offset: 0, buffers: [head] }]);
        assert.ok(head.every((b) => b === 0), 'a never-written block reads as zeros');
      });
    }
  }

  for (const engine of ENGINES) {
    describe(`the ${engine} engine`, () => {
      beforeEach(function () {
        skipWithoutIoUring(this, engine);
      });

      it('queues a batch of many more requests than queueDepth and completes every one, in its own place', async () => {
        const file = scratch.file(`${engine}-deep.img`);
        const count = 200;
        const device = await openDevice(file, { size: count * PAGE, engine, queueDepth: 4 });
        assert.equal(device.queueDepth, 4);
        const source = Slab.alloc(PAGE, count);
        try {
          // Submitted in reverse order, so that completion order cannot line up with offsets by chance.
          const writes: IoRequest[] = [];
          for (let i = count - 1; i >= 0; i--) {
            const p = source.page(i);
            pattern(i, PAGE, i * PAGE).copy(p);
            writes.push({ op: 'write', offset: i * PAGE, buffers: [p] });
          }
          const results = await device.submit(writes);
          assert.equal(results.length, count);
          for (const result of results) assert.deepEqual(result, { bytes: PAGE });
          await device.flush();
        } finally {
          await device.close();
          source.release();
        }
        const plain = fs.readFileSync(file);
        for (let i = 0; i < count; i++) {
          assert.deepEqual(plain.subarray(i * PAGE, (i + 1) * PAGE), pattern(i, PAGE, i * PAGE), `block ${i}`);
        }
      });

      it('reads a batch deeper than queueDepth, scattering each request over several buffers', async () => {
        const file = scratch.file(`${engine}-scatter.img`);
        const image = pattern(99, 96 * PAGE);
        fs.writeFileSync(file, image);
        const device = await openDevice(file, { engine, queueDepth: 2 });
        const pages = Array.from({ length: 96 }, (_, i) => slab.page(i));
        for (const p of pages) p.fill(0);
        // 32 requests of 3 pages each, the pages of a request taken out of order from the slab.
        const reads: IoRequest[] = [];
        for (let r = 0; r < 32; r++) {
          reads.push({ op: 'read', offset: r * 3 * PAGE, buffers: [pages[95 - r], pages[r + 32], pages[r]] });
        }
        const results = await device.submit(reads);
        assert.deepEqual(
          results.map((x) => x.bytes),
          new Array(32).fill(3 * PAGE),
        );
        for (let r = 0; r < 32; r++) {
          const got = Buffer.concat(reads[r].buffers as Buffer[]);
          assert.deepEqual(got, image.subarray(r * 3 * PAGE, (r + 1) * 3 * PAGE), `request ${r}`);
        }
      });

      // That a dsync write and flush() make data durable only the block layer can
      // show (the page cache serves these reads either way): see
      // durability-block-layer.test.ts. This checks that they carry the data.
      it('a dsync write, a plain write and a flush all succeed, and the data is there for plain fs', async () => {
        const file = scratch.file(`${engine}-dsync.img`);
        const device = await openDevice(file, { size: 16 * PAGE, engine });
        const a = slab.page(0);
        const b = slab.page(1);
        pattern(1, PAGE).copy(a);
        pattern(2, PAGE).copy(b);
        const results = await device.submit([
          { op: 'write', offset: 0, buffers: [a], dsync: true },
          { op: 'write', offset: 15 * PAGE, buffers: [b], dsync: false },
        ]);
        assert.deepEqual(results, [{ bytes: PAGE }, { bytes: PAGE }]);
        await device.flush();
        assert.deepEqual(readPlain(file, 0, PAGE), pattern(1, PAGE));
        assert.deepEqual(readPlain(file, 15 * PAGE, PAGE), pattern(2, PAGE));
      });

      it('orders a flush after the writes submitted before it, in one stream of calls', async () => {
        const file = scratch.file(`${engine}-flush-order.img`);
        const device = await openDevice(file, { size: 64 * PAGE, engine, queueDepth: 2 });
        const events: string[] = [];
        const writes = Array.from({ length: 16 }, (_, i) => {
          const p = slab.page(i);
          pattern(i + 50, PAGE).copy(p);
          return device.submit([{ op: 'write', offset: i * PAGE, buffers: [p] }]).then(() => void events.push(`write ${i}`));
        });
        const flushed = device.flush().then(() => void events.push('flush'));
        await Promise.all([...writes, flushed]);
        assert.equal(events.at(-1), 'flush', `the flush completed before some write: ${events.join(', ')}`);
      });

      it('holds a write submitted after a flush until the flush has completed', async () => {
        const file = scratch.file(`${engine}-flush-barrier.img`);
        const device = await openDevice(file, { size: 64 * PAGE, engine, queueDepth: 8 });
        const events: string[] = [];
        const write = (i: number) => {
          const p = slab.page(i);
          pattern(i + 70, PAGE).copy(p);
          return device.submit([{ op: 'write', offset: i * PAGE, buffers: [p] }]).then(() => void events.push(`write ${i}`));
        };
        // Slots are free for all three at once: only the barrier keeps the later write back.
        const before = write(0);
        const flushed = device.flush().then(() => void events.push('flush'));
        const after = write(1);
        await Promise.all([before, flushed, after]);
        assert.deepEqual(events, ['write 0', 'flush', 'write 1']);
      });

      it('lets a read go ahead of queued writes and of a flush: a reader never waits for the writeout', async () => {
        const file = scratch.file(`${engine}-read-first.img`);
        const run = 4 << 20;
        fs.writeFileSync(file, pattern(5, 2 * run));
        // One slot: a long write holds it, and a flush and a write queue behind it, then a read.
        const device = await openDevice(file, { engine, queueDepth: 1 });
        const source = Slab.alloc(1 << 20, run >> 20);
        try {
          const events: string[] = [];
          const long = device.submit([{ op: 'write', offset: 0, buffers: Array.from({ length: run >> 20 }, (_, i) => source.page(i)) }]).then(() => void events.push('long write'));
          const flushed = device.flush().then(() => void events.push('flush'));
          const p = slab.page(0);
          const queuedWrite = device.submit([{ op: 'write', offset: run, buffers: [p] }]).then(() => void events.push('queued write'));
          const q = slab.page(1);
          const read = device.submit([{ op: 'read', offset: run + PAGE, buffers: [q] }]).then(() => void events.push('read'));
          await Promise.all([long, flushed, queuedWrite, read]);
          // Whether the read also passes the long write depends on when a slot frees (the
          // threads start on first use); that it passes the two queued behind is the rule.
          const at = (event: string) => events.indexOf(event);
          assert.ok(at('read') < at('flush') && at('long write') < at('flush') && at('flush') < at('queued write'), events.join(', '));
          assert.deepEqual(Buffer.from(q), pattern(5, PAGE, run + PAGE));
        } finally {
          await device.close();
          source.release();
        }
      });

      it('reports per-request results: a read past a file that shrank under the device is short, not an error', async () => {
        const file = scratch.file(`${engine}-shrunk.img`);
        fs.writeFileSync(file, pattern(7, 8 * PAGE));
        const device = await openDevice(file, { engine });
        assert.equal(device.geometry.size, 8 * PAGE);
        // Another writer shrinks the file to 2 pages; the device still believes 8.
        fs.truncateSync(file, 2 * PAGE);
        const pages = [0, 1, 2, 3].map((i) => slab.page(i));
        const results = await device.submit([
          { op: 'read', offset: 0, buffers: [pages[0]] },
          { op: 'read', offset: PAGE, buffers: [pages[1], pages[2]] },
          { op: 'read', offset: 4 * PAGE, buffers: [pages[3]] },
        ]);
        assert.deepEqual(results, [{ bytes: PAGE }, { bytes: PAGE }, { bytes: 0 }]);
        assert.deepEqual(pages[0], pattern(7, PAGE));
      });

      it('run() turns a short read into an EIO error that says how short', async () => {
        const file = scratch.file(`${engine}-short.img`);
        fs.writeFileSync(file, pattern(8, 8 * PAGE));
        const device = await openDevice(file, { engine });
        fs.truncateSync(file, 3 * PAGE);
        const pages = [slab.page(0), slab.page(1)];
        await device.run([{ op: 'read', offset: 0, buffers: [pages[0]] }]);
        await assert.rejects(device.run([{ op: 'read', offset: 2 * PAGE, buffers: pages }]), {
          code: 'EIO',
          errno: -5,
          syscall: 'preadv',
          path: file,
          message: `EIO: i/o error, preadv '${file}' (short read: ${PAGE} of ${2 * PAGE} bytes at offset ${2 * PAGE})`,
        });
      });

      it('refuses memory that is not a slab with a TypeError, even at an address aligned for O_DIRECT', async () => {
        // Any other ArrayBuffer may be collected, detached or transferred
        // under the I/O. JS cannot see an address: windows of a plain
        // ArrayBuffer (whose memory is 16-byte aligned) are tried every 16
        // bytes, and one of them is aligned.
        const file = scratch.file(`${engine}-plain-memory.img`);
        const device = await openDevice(file, { size: 4 * PAGE, engine });
        const backing = new ArrayBuffer(3 * PAGE);
        for (let shift = 0; shift < device.geometry.memoryAlignment; shift += 16) {
          const view = new Uint8Array(backing, shift, PAGE);
          await assert.rejects(device.run([{ op: 'write', offset: PAGE, buffers: [view] }]), {
            name: 'TypeError',
            message: 'request 0: buffer 0 is not slab memory (I/O buffers must be views of a Slab of this thread)',
          });
        }
        assert.deepEqual(readPlain(file, PAGE, PAGE), Buffer.alloc(PAGE), 'nothing was written');
      });
    });
  }
});
