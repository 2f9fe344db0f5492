import assert from 'node:assert/strict';
import { ReadBatch } from '../src/cache/read-batch';
import { MAX_STREAMS, Readahead } from '../src/cache/readahead';
import { systemError } from '../src/io/errors';
import { MAX_BUFFERS_PER_REQUEST, MAX_REQUEST_BYTES, type BlockIo, type IoRequest, type IoResult } from '../src/io/request';
import { MemoryDevice } from './support/memory-device';

// The two policies of the read path on their own, without a cache: the
// readahead windows (readahead.ts) and the batching and merging of reads
// (read-batch.ts). The device under ReadBatch is in memory; the wrapper
// records each submit and can make a request fail, come back short, or
// reject.

describe('Readahead: the windows of a stream (after Linux mm/readahead.c)', () => {
  it('a first miss is random; a miss at the page its stream expects starts a window, and each use of a mark starts the next', () => {
    const ra = new Readahead(256);
    assert.equal(ra.miss(10, 1), undefined, 'one miss says nothing of a stream');
    assert.deepEqual(ra.miss(11, 1), { start: 11, size: 4, mark: 12 }, 'sequential: the initial window, marked on the page after the one wanted');
    assert.equal(ra.marked(11), undefined, 'a page that is not a mark starts nothing');
    // Small windows grow fourfold (below maxPages / 16), then twofold, up to maxPages.
    assert.deepEqual(ra.marked(12), { start: 15, size: 16, mark: 15 });
    assert.equal(ra.marked(12), undefined, 'a mark starts one window only');
    assert.deepEqual(ra.marked(15), { start: 31, size: 32, mark: 31 });
    assert.deepEqual(ra.marked(31), { start: 63, size: 64, mark: 63 });
    assert.deepEqual(ra.marked(63), { start: 127, size: 128, mark: 127 });
    assert.deepEqual(ra.marked(127), { start: 255, size: 256, mark: 255 });
    assert.deepEqual(ra.marked(255), { start: 511, size: 256, mark: 511 }, 'never beyond maxPages');
  });

  it('the initial window is four times what the reader wants (at least 4 pages), within maxPages, and covers what is wanted', () => {
    const wide = new Readahead(1024);
    wide.miss(0, 3);
    assert.deepEqual(wide.miss(3, 3), { start: 3, size: 12, mark: 6 });
    const narrow = new Readahead(8);
    narrow.miss(0, 10);
    assert.deepEqual(narrow.miss(10, 10), { start: 10, size: 10, mark: -1 }, 'the window holds what is wanted, and has no page beyond it to mark');
    const small = new Readahead(2);
    small.miss(0, 1);
    assert.deepEqual(small.miss(1, 1), { start: 1, size: 2, mark: 2 });
  });

  it('a miss inside the last window (its pages were evicted unused) restarts the stream from there, grown; a miss before it is random', () => {
    const ra = new Readahead(64);
    ra.miss(100, 1);
    assert.deepEqual(ra.miss(101, 1), { start: 101, size: 4, mark: 102 });
    assert.deepEqual(ra.miss(101, 1), { start: 101, size: 8, mark: 102 }, 'the first page of the window 101..104');
    assert.deepEqual(ra.miss(105, 1), { start: 105, size: 16, mark: 106 }, 'inside the window 101..108');
    assert.equal(ra.miss(104, 1), undefined, 'before the window 105..120, and not what any stream expects');
  });

  it(`keeps ${MAX_STREAMS} streams per mapping, replacing the least recently used`, () => {
    const ra = new Readahead(64);
    for (let s = 0; s < MAX_STREAMS; s++) assert.equal(ra.miss(1000 * s, 1), undefined);
    // Stream 0 goes on (most recently used now); stream 1 is the oldest.
    assert.deepEqual(ra.miss(1, 1), { start: 1, size: 4, mark: 2 });
    assert.equal(ra.miss(1000 * MAX_STREAMS, 1), undefined, 'one stream more than there is room for');
    assert.deepEqual(ra.miss(2001, 1), { start: 2001, size: 4, mark: 2002 }, 'stream 2 was kept');
    assert.deepEqual(ra.marked(2), { start: 5, size: 8, mark: 5 }, 'stream 0 was kept');
    assert.deepEqual(ra.miss(1000 * MAX_STREAMS + 1, 1), { start: 1000 * MAX_STREAMS + 1, size: 4, mark: 1000 * MAX_STREAMS + 2 }, 'the newest stream was kept');
    assert.equal(ra.miss(1001, 1), undefined, 'stream 1, the least recently used, was replaced');
  });
});

/** An in-memory device whose submits are recorded, and whose requests at chosen offsets fail, come back short, or reject. */
class ReadDevice implements BlockIo {
  readonly memory = new MemoryDevice({ size: 8 << 20 });
  /** Per submit: its requests as (offset, bytes, buffers). */
  readonly submits: { offset: number; bytes: number; buffers: number }[][] = [];
  readonly failAt = new Map<number, IoResult>();
  readonly rejectAt = new Map<number, Error>();

  get path(): string {
    return 'reads';
  }

  get geometry(): BlockIo['geometry'] {
    return this.memory.geometry;
  }

  async submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    this.submits.push(requests.map((r) => ({ offset: r.offset, bytes: r.buffers.reduce((n, b) => n + b.byteLength, 0), buffers: r.buffers.length })));
    const rejection = this.rejectAt.get(requests[0].offset);
    if (rejection) throw rejection;
    const failure = this.failAt.get(requests[0].offset);
    if (failure) return [failure];
    return this.memory.submit(requests);
  }

  run(): Promise<void> {
    throw new Error('ReadBatch submits');
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A read of `count` separate 512-byte buffers at `offset` (separate memory: joinAdjacent cannot join them). */
function read(offset: number, count = 1, size = 512): IoRequest {
  return { op: 'read', offset, buffers: Array.from({ length: count }, () => new Uint8Array(size)) };
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('ReadBatch: the reads of one turn go down together, sorted and merged', () => {
  it('holds the reads of the turn until it has run, then submits them sorted by offset, adjacent ones merged into one request each', async () => {
    const device = new ReadDevice();
    device.memory.volatile.fill(0x5a, 0, 64 << 10);
    const batch = new ReadBatch(device);
    const a = read(8192);
    const b = read(0, 2);
    const c = read(1024);
    const d = read(32768);
    const done = Promise.all([batch.run([a]), batch.run([b, d]), batch.run([c])]);
    assert.equal(device.submits.length, 0, 'nothing goes down while the turn runs');
    await done;
    assert.deepEqual(device.submits, [[{ offset: 0, bytes: 1536, buffers: 3 }], [{ offset: 8192, bytes: 512, buffers: 1 }], [{ offset: 32768, bytes: 512, buffers: 1 }]]);
    for (const request of [a, b, c, d]) for (const buffer of request.buffers) assert.deepEqual(buffer, new Uint8Array(512).fill(0x5a), `the read at ${request.offset} landed`);
    await batch.run([read(4096)]);
    assert.equal(device.submits.length, 4, 'a later turn makes a batch of its own');
  });

  it('`now` submits at once, with whatever else is queued', async () => {
    const device = new ReadDevice();
    const batch = new ReadBatch(device);
    const queued = batch.run([read(0)]);
    const now = batch.run([read(512)], true);
    assert.deepEqual(device.submits, [[{ offset: 0, bytes: 1024, buffers: 2 }]]);
    await Promise.all([queued, now]);
    await turn();
    assert.equal(device.submits.length, 1, 'the turn\'s end finds nothing left to submit');
    assert.equal(await batch.run([]), undefined, 'an empty run resolves without I/O');
    await turn();
    assert.equal(device.submits.length, 1);
  });

  it(`a merged request stops at ${MAX_REQUEST_BYTES} bytes and at ${MAX_BUFFERS_PER_REQUEST} buffers`, async () => {
    const device = new ReadDevice();
    const batch = new ReadBatch(device);
    const half = MAX_REQUEST_BYTES / 2;
    await Promise.all([batch.run([read(0, 1, half)]), batch.run([read(half, 1, half)]), batch.run([read(2 * half, 1, 512)])]);
    assert.deepEqual(device.submits.flat(), [
      { offset: 0, bytes: MAX_REQUEST_BYTES, buffers: 2 },
      { offset: MAX_REQUEST_BYTES, bytes: 512, buffers: 1 },
    ]);
    device.submits.length = 0;
    const base = 2 * MAX_REQUEST_BYTES;
    const singles = Array.from({ length: MAX_BUFFERS_PER_REQUEST + 1 }, (_, k) => batch.run([read(base + 512 * k)]));
    await Promise.all(singles);
    assert.deepEqual(device.submits.flat(), [
      { offset: base, bytes: 512 * MAX_BUFFERS_PER_REQUEST, buffers: MAX_BUFFERS_PER_REQUEST },
      { offset: base + 512 * MAX_BUFFERS_PER_REQUEST, bytes: 512, buffers: 1 },
    ]);
  });

  it('a merged request that fails fails every read with a part in it, and only those; a read with parts in two waits for both', async () => {
    const device = new ReadDevice();
    const batch = new ReadBatch(device);
    const eio = systemError(-5, 'preadv', 'reads');
    device.failAt.set(4096, { bytes: 0, error: eio });
    const first = batch.run([read(0), read(4096)]);
    const second = batch.run([read(4608)]);
    const apart = batch.run([read(16384)]);
    const results = await Promise.allSettled([first, second, apart]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected', 'fulfilled'],
    );
    assert.equal((results[0] as PromiseRejectedResult).reason, eio);
    assert.equal((results[1] as PromiseRejectedResult).reason, eio);
    assert.equal(device.submits.length, 3, 'the read at 0 went down alone, and its request succeeded');
  });

  it('a short read is an EIO that says how short; a submit that rejects rejects its reads', async () => {
    const device = new ReadDevice();
    const batch = new ReadBatch(device);
    device.failAt.set(8192, { bytes: 512 });
    await assert.rejects(batch.run([read(8192, 2)]), { code: 'EIO', syscall: 'preadv', path: 'reads', message: /short read: 512 of 1024 bytes at offset 8192/ });
    const gone = new Error('device gone');
    device.rejectAt.set(0, gone);
    const results = await Promise.allSettled([batch.run([read(0)]), batch.run([read(512)]), batch.run([read(4096)])]);
    assert.deepEqual(
      results.map((r) => (r.status === 'rejected' ? r.reason : 'read')),
      [gone, gone, 'read'],
    );
    // A read with parts in two failed requests rejects with the error of the first to complete.
    const other = systemError(-5, 'preadv', 'reads');
    device.failAt.set(65536, { bytes: 0, error: other });
    await assert.rejects(batch.run([read(65536), read(0)]), (error) => error === gone);
  });
});
