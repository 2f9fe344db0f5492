import { strict as assert } from 'node:assert';
import { native } from '../src/native';
import { Slab } from '../src/io/slab';
import { crc32c, crc32cOfChunks } from '../src/journal/crc32c';
import { describeChild, runChild, source } from './support/child';

/**
 * The addon's CRC32C (native/crc32c.cc), which every checksum of the
 * journal's format goes through: the standard's check values, a bit-at-a-time
 * reference written here from the polynomial on every length and alignment
 * (the hardware path's three streams and their shift tables, the tables'
 * eight-byte steps and their head and tail bytes), the batch on the thread
 * pool, and its safety at the native boundary.
 */

/** CRC32C bit by bit from the reflected polynomial 0x82F63B78: nothing shared with the addon. */
function reference(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** Bytes that are neither zero nor periodic over the lengths tried. */
function noise(length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('native CRC32C', () => {
  it('gives the check values of the standard (RFC 3720 B.4 and "123456789"), with the instruction and with the tables', () => {
    const vectors: [Uint8Array, number][] = [
      [Buffer.from('123456789'), 0xe3069283],
      [new Uint8Array(32), 0x8a9136aa],
      [new Uint8Array(32).fill(0xff), 0x62a8ab43],
      [Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
      [Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
      [new Uint8Array(0), 0],
    ];
    for (const [data, expected] of vectors) {
      assert.equal(crc32c(data), expected, `crc32c of ${Buffer.from(data).toString('hex')}`);
      assert.equal(native.crc32cTables(data), expected, `tables of ${Buffer.from(data).toString('hex')}`);
    }
  });

  it('uses the CPU instruction where the CPU has it (x86-64 with SSE4.2, arm64 with the CRC extension)', function () {
    if (process.arch !== 'x64') this.skip();
    // Every x86-64 CPU since 2008 has SSE4.2; a machine without it would run the tables, which the other tests check too.
    assert.equal(native.crc32cHardware, true);
  });

  it('equals the bitwise reference on every length up to 4,200 bytes at every alignment, and on long lengths across the stream sizes', () => {
    const data = noise(70_000);
    const lengths: number[] = [];
    for (let n = 0; n <= 4200; n++) lengths.push(n);
    // 3 × 256 and 3 × 8192 are where the three streams start; one byte either side of each multiple.
    for (const base of [768, 1536, 3 * 8192, 2 * 3 * 8192, 3 * 8192 + 768]) lengths.push(base - 1, base, base + 1, base + 7, base + 9);
    lengths.push(65_536, 65_536 + 13, 69_990);
    let checked = 0;
    for (let offset = 0; offset < 8; offset++) {
      for (const n of lengths) {
        if (offset + n > data.length) continue;
        const view = data.subarray(offset, offset + n);
        const expected = reference(view);
        if (crc32c(view) !== expected) assert.fail(`length ${n} at offset ${offset}: ${crc32c(view).toString(16)}, expected ${expected.toString(16)}`);
        if (native.crc32cTables(view) !== expected) assert.fail(`tables, length ${n} at offset ${offset}`);
        checked++;
      }
    }
    assert.ok(checked > 8 * 4200);
  });

  it('continues from a previous checksum: crc32c(b, crc32c(a)) is crc32c(a ‖ b) at every split', () => {
    const data = noise(3 * 8192 + 300);
    const whole = reference(data);
    for (let split = 0; split <= data.length; split += split < 64 ? 1 : 257) {
      const first = crc32c(data.subarray(0, split));
      assert.equal(crc32c(data.subarray(split), first), whole, `split at ${split}`);
      assert.equal(native.crc32cTables(data.subarray(split), native.crc32cTables(data.subarray(0, split))), whole, `tables, split at ${split}`);
    }
  });

  it('refuses bad arguments with TypeError and RangeError', () => {
    const bad = native as unknown as { crc32c: (...args: unknown[]) => number; crc32cBatch: (...args: unknown[]) => void };
    assert.throws(() => bad.crc32c(), TypeError);
    assert.throws(() => bad.crc32c('123456789'), { name: 'TypeError', message: 'crc32c: data must be a Uint8Array or Buffer' });
    assert.throws(() => bad.crc32c(new Uint16Array(4)), TypeError);
    assert.throws(() => bad.crc32c(new Uint8Array(4), 'x'), { name: 'TypeError', message: 'crc32c: previous must be a number' });
    for (const previous of [-1, 2 ** 32, 1.5, NaN]) {
      assert.throws(() => bad.crc32c(new Uint8Array(4), previous), RangeError, `previous ${previous}`);
    }
    assert.throws(() => bad.crc32cBatch(new Uint8Array(4), () => undefined), { name: 'TypeError', message: 'crc32cBatch: views must be an array of Uint8Arrays' });
    assert.throws(() => bad.crc32cBatch([new Uint8Array(4)]), { name: 'TypeError', message: 'crc32cBatch: done must be a function' });
    assert.throws(() => bad.crc32cBatch([new Uint8Array(4), 7], () => undefined), TypeError);
    const slab = Slab.alloc(4096, 2);
    const detached = Slab.alloc(4096, 1);
    const view = detached.page(0);
    detached.release();
    try {
      assert.throws(() => bad.crc32cBatch([slab.page(0), view], () => undefined), RangeError);
      // A refused batch pinned nothing: the slab it named first is free to go.
      slab.release();
    } finally {
      slab.release();
    }
  });

  it('checksums a batch on the thread pool: slab pages and other buffers, in order, each equal to the reference', async () => {
    const slab = Slab.alloc(4096, 64);
    try {
      const views: Uint8Array[] = [];
      for (let i = 0; i < 64; i++) {
        slab.page(i).set(noise(4096 + i).subarray(i));
        views.push(slab.page(i));
        // Interleaved: memory on the V8 heap (checksummed at once) and a part of a page.
        if (i % 16 === 0) views.push(Buffer.from(noise(100 + i)), slab.page(i).subarray(3, 1000));
      }
      const sums = await new Promise<Uint32Array>((resolve) => native.crc32cBatch(views, resolve));
      assert.ok(sums instanceof Uint32Array);
      assert.deepEqual(Array.from(sums), views.map((v) => reference(v)));
      assert.deepEqual(Array.from(await new Promise<Uint32Array>((resolve) => native.crc32cBatch([], resolve))), []);
    } finally {
      slab.release();
    }
  });

  it('with chunkBytes, checksums each chunk of each view in turn: runs of slab pages and other buffers, each equal to the reference', async () => {
    const slab = Slab.alloc(4096, 64);
    try {
      for (let i = 0; i < 64; i++) slab.page(i).set(noise(4096 + i).subarray(i));
      const pages = (first: number, count: number): Uint8Array => new Uint8Array(slab.memory, first * 4096, count * 4096);
      // Runs of pages of one slab as the requests that write them hold them, a heap buffer among them.
      const views = [pages(0, 1), pages(1, 20), Buffer.from(noise(3 * 4096)), pages(30, 34), pages(21, 0)];
      const expected: number[] = [];
      for (const view of views) for (let at = 0; at < view.byteLength; at += 4096) expected.push(reference(view.subarray(at, at + 4096)));
      assert.equal(expected.length, 58);
      assert.deepEqual(Array.from(await crc32cOfChunks(views, 4096)), expected);
      // Any chunk size that divides every view, 512-byte sectors say.
      const sectors: number[] = [];
      for (let at = 0; at < 8192; at += 512) sectors.push(reference(pages(5, 2).subarray(at, at + 512)));
      assert.deepEqual(Array.from(await crc32cOfChunks([pages(5, 2)], 512)), sectors);
      assert.deepEqual(Array.from(await crc32cOfChunks([], 4096)), []);
      const bad = native as unknown as { crc32cBatch: (...args: unknown[]) => void };
      assert.throws(() => bad.crc32cBatch([pages(0, 1), slab.page(1).subarray(0, 4000)], () => undefined, 4096), {
        name: 'RangeError',
        message: "crc32cBatch: a view's length is not a multiple of chunkBytes",
      });
      for (const chunk of [0, -4096, 1.5, NaN, 2 ** 32]) assert.throws(() => bad.crc32cBatch([pages(0, 1)], () => undefined, chunk), RangeError, `chunkBytes ${chunk}`);
      assert.throws(() => bad.crc32cBatch([pages(0, 1)], () => undefined, '4096'), { name: 'TypeError', message: 'crc32cBatch: chunkBytes must be a number' });
      // Refused batches pinned nothing: the slab goes.
    } finally {
      slab.release();
    }
  });

  it('pins the batch slabs until it ends: releaseSlab refuses meanwhile, and succeeds in the callback', async () => {
    const slab = Slab.alloc(4096, 16);
    const views = Array.from({ length: 16 }, (_, i) => slab.page(i));
    let refused: unknown;
    const released = await new Promise<unknown>((resolve) => {
      native.crc32cBatch(views, () => {
        try {
          slab.release();
          resolve(undefined);
        } catch (error) {
          resolve(error);
        }
      });
      try {
        slab.release();
      } catch (error) {
        refused = error;
      }
    });
    assert.ok(refused instanceof Error, 'released while the job was queued');
    assert.equal(refused.message, 'releaseSlab: the slab is in use by 16 buffer(s) of I/O requests or checksum jobs in flight');
    assert.equal(released, undefined, 'the callback could release the slab');
  });

  it('a Worker terminated while its batch runs on the pool: the job ends in mapped memory, the process goes on', function () {
    this.timeout(120_000);
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const body = ${JSON.stringify(`
        ${"require(" + source('node_modules/ts-node') + ").register({ transpileOnly: true, project: " + source('tsconfig.json') + " });"}
        const { native } = require(${source('src/native.ts')});
        const { parentPort } = require('node:worker_threads');
        // 16 views of a whole 64 MiB slab: a second or more of work on a pool thread.
        const memory = native.allocSlab(64 << 20);
        const whole = new Uint8Array(memory);
        whole.fill(7);
        native.crc32cBatch(Array.from({ length: 16 }, () => whole), () => parentPort.postMessage('done'));
        parentPort.postMessage('submitted');
      `)};
      (async () => {
        for (let i = 0; i < 3; i++) {
          const w = new Worker(body, { eval: true });
          const first = await new Promise((resolve) => w.once('message', resolve));
          const code = await w.terminate();
          console.log(JSON.stringify({ first, code }));
        }
        // The main thread's own checksums still work.
        const { native } = require(${source('src/native.ts')});
        console.log(JSON.stringify({ check: native.crc32c(Buffer.from('123456789')) }));
      })();
    `);
    assert.equal(child.signal, null, describeChild(child));
    assert.equal(child.status, 0, describeChild(child));
    const lines = child.stdout.trim().split('\n').map((l) => JSON.parse(l) as { first?: string; code?: number; check?: number });
    assert.deepEqual(lines.slice(0, 3), [0, 1, 2].map(() => ({ first: 'submitted', code: 1 })), describeChild(child));
    assert.deepEqual(lines[3], { check: 0xe3069283 });
  });
});
