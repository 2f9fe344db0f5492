import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { AdjacentViews, joinAdjacent } from '../src/io/adjacent';
import { Slab } from '../src/io/slab';
import { homeRequests, homeRunRequests } from '../src/journal/home-area';
import { MAX_BUFFERS_PER_REQUEST, MAX_REQUEST_BYTES } from '../src/io/request';
import { LogRing } from '../src/journal/log-ring';

/**
 * Every block a request list covers, in order, as "device offset:memory
 * offset" (each buffer a view of the one slab): which block of memory goes
 * to which place on the device, exactly.
 */
function flatten(requests: { offset: number; buffers: readonly Uint8Array[] }[], blockSize: number, memory: ArrayBuffer): string[] {
  const out: string[] = [];
  for (const r of requests) {
    let at = r.offset;
    for (const b of r.buffers) {
      assert.equal(b.buffer, memory, 'a view of the images, not a copy');
      assert.equal(b.byteLength % blockSize, 0);
      for (let o = 0; o < b.byteLength; o += blockSize) {
        out.push(`${at}:${b.byteOffset + o}`);
        at += blockSize;
      }
    }
  }
  return out;
}

describe('journal: log and home requests', () => {
  const B = 512;
  let slab: Slab;
  before(() => {
    slab = Slab.alloc(B, 2048);
  });
  after(() => slab.release());

  it('joins views adjacent in memory, and only those', () => {
    const a = slab.page(0);
    const b = slab.page(1);
    const d = slab.page(3);
    const joined = joinAdjacent([a, b, d, slab.page(2)]);
    assert.deepEqual(joined.map((v) => [v.byteOffset, v.byteLength]), [
      [a.byteOffset, 2 * B],
      [d.byteOffset, B],
      [slab.page(2).byteOffset, B],
    ]);
    assert.equal(joined[0].buffer, slab.memory);
    assert.deepEqual(joinAdjacent([]), []);
    // The same from where each piece lies, pieces of any length: a joiner that starts empty again after each finish.
    const joiner = new AdjacentViews();
    joiner.add(slab.memory, b.byteOffset, B);
    joiner.add(slab.memory, b.byteOffset + B, 2 * B);
    joiner.add(slab.memory, a.byteOffset, B);
    assert.deepEqual(joiner.finish().map((v) => [v.byteOffset, v.byteLength]), [
      [b.byteOffset, 3 * B],
      [a.byteOffset, B],
    ]);
    assert.deepEqual(joiner.finish(), []);
  });

  it('log requests: every block once, at its ring offset, split at the wrap, within the size and buffer limits', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 5000 }),
        fc.integer({ min: 0, max: 20000 }),
        fc.array(fc.integer({ min: 0, max: 2047 }), { minLength: 1, maxLength: 3000 }),
        (logBlocks, position, pages) => {
          fc.pre(pages.length <= logBlocks);
          const ring = new LogRing(7, logBlocks, B);
          const buffers = pages.map((p) => slab.page(p));
          const requests = ring.requests('write', position, buffers);
          for (const r of requests) {
            const bytes = r.buffers.reduce((n, b) => n + b.byteLength, 0);
            assert.ok(bytes <= MAX_REQUEST_BYTES && r.buffers.length <= MAX_BUFFERS_PER_REQUEST);
            // A request never runs past the ring's end.
            const first = r.offset / B - 7;
            assert.ok(first + bytes / B <= logBlocks);
          }
          // FORMAT.md: position p is stored in device block logStart + (p mod logBlocks).
          const expected = pages.map((p, i) => `${(7 + ((position + i) % logBlocks)) * B}:${slab.page(p).byteOffset}`);
          assert.deepEqual(flatten(requests, B, slab.memory), expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('home requests: runs of consecutive homes, each image at its home, within the size and buffer limits', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 100000 }), { minLength: 1, maxLength: 3000 }), (homes) => {
        homes.sort((a, b) => a - b);
        const blocks = homes.map((home, i) => ({ home, image: slab.page(i % 2048) }));
        const requests = homeRequests(11, B, blocks);
        for (const r of requests) {
          assert.ok(r.buffers.reduce((n, b) => n + b.byteLength, 0) <= MAX_REQUEST_BYTES && r.buffers.length <= MAX_BUFFERS_PER_REQUEST);
        }
        assert.deepEqual(flatten(requests, B, slab.memory), blocks.map((b) => `${(11 + b.home) * B}:${b.image.byteOffset}`));
      }),
      { numRuns: 200 },
    );
  });

  it('home requests: a run whose images are all apart in memory is cut at the buffer limit, in order', () => {
    // 3000 consecutive homes, no two images adjacent: buffers, not bytes, set where requests end.
    const blocks = Array.from({ length: 3000 }, (_, i) => ({ home: 5 + i, image: slab.page((i * 7) % 2048) }));
    const requests = homeRequests(11, B, blocks);
    assert.deepEqual(requests.map((r) => r.buffers.length), [MAX_BUFFERS_PER_REQUEST, MAX_BUFFERS_PER_REQUEST, 3000 - 2 * MAX_BUFFERS_PER_REQUEST]);
    assert.deepEqual(flatten(requests, B, slab.memory), blocks.map((b) => `${(11 + b.home) * B}:${b.image.byteOffset}`));
  });

  it('redirected runs: every block of every image (one block or several joined) at its home, cut within the size and buffer limits', () => {
    const image = fc.tuple(fc.integer({ min: 0, max: 2047 }), fc.integer({ min: 1, max: 2048 })).map(([page, n]) => {
      const blocks = Math.min(n, 2048 - page);
      return new Uint8Array(slab.memory, page * B, blocks * B);
    });
    const run = fc.record({ gap: fc.integer({ min: 0, max: 3 }), images: fc.array(image, { minLength: 1, maxLength: 6 }) });
    fc.assert(
      fc.property(fc.array(run, { minLength: 1, maxLength: 5 }), (shapes) => {
        let end = 0;
        const runs = shapes.map(({ gap, images }) => {
          const home = end + gap;
          end = home + images.reduce((n, v) => n + v.byteLength / B, 0);
          return { home, images };
        });
        const requests = homeRunRequests(11, B, runs);
        for (const r of requests) {
          assert.ok(r.op === 'write' && r.buffers.reduce((n, b) => n + b.byteLength, 0) <= MAX_REQUEST_BYTES && r.buffers.length <= MAX_BUFFERS_PER_REQUEST);
        }
        const expected: string[] = [];
        for (const { home, images } of runs) {
          let at = home;
          for (const v of images) for (let o = 0; o < v.byteLength; o += B) expected.push(`${(11 + at++) * B}:${v.byteOffset + o}`);
        }
        assert.deepEqual(flatten(requests, B, slab.memory), expected);
      }),
      { numRuns: 200 },
    );
  });
});
