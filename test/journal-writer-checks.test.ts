import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from '../src/io/device';
import type { Slab } from '../src/io/slab';
import { allocBlocks } from '../src/journal/block-memory';
import type { JournalBlock, JournalRun } from '../src/journal/home-area';
import { JournalWriter } from '../src/journal/journal-writer';
import { inspectJournal } from '../src/journal/replay';
import { homeBlocks, type Superblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';
import { FaultDevice, type FaultPlan } from './support/fault-device';

/**
 * What JournalWriter refuses before any I/O, each with the message that
 * names the argument and its bounds: deltas' blocks (an array of
 * { home, image }, homes in the home area and strictly ascending) and
 * redirected runs ({ home, images }, only in version 2, inside the physical
 * area, in order and apart),
 * checkpoint numbers; and a journal closed or failed.
 */

const B = 512;
const SIZE = 2 << 20;

describe('journal writer: the arguments it refuses', () => {
  let dir: string;
  const open: Device[] = [];
  const slabs: Slab[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-writer-checks-'));
  });
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    for (const s of slabs.splice(0)) s.release();
    await rm(dir, { recursive: true, force: true });
  });

  async function fresh(version: 1 | 2): Promise<{ journal: JournalWriter; sb: Superblock; device: Device }> {
    const device = await Device.open(join(dir, `v${version}.img`), { size: SIZE });
    open.push(device);
    const sb = await formatVolume(device, { blockSize: B, logBlocks: 64, version, reserveBlocks: version === 2 ? 64 : undefined });
    const { journal } = await JournalWriter.open(device);
    return { journal, sb, device };
  }

  function block(home: number, tag = 1): JournalBlock {
    const slab = allocBlocks(B, 1);
    slabs.push(slab);
    slab.page(0).fill(tag);
    return { home, image: slab.page(0) };
  }

  /** A redirected run of `count` blocks from `home`. */
  function run(home: number, count = 1): JournalRun {
    return { home, images: Array.from({ length: count }, (_, i) => block(home + i).image) };
  }

  it('blocks must be an array of { home, image }, and redirected an array', async () => {
    const { journal } = await fresh(2);
    await assert.rejects(journal.appendDelta(1, { length: 1 } as unknown as JournalBlock[]), { name: 'TypeError', message: 'blocks must be an array, got an object (Object)' });
    await assert.rejects(journal.appendDelta(1, [], { length: 0 } as unknown as JournalRun[]), { name: 'TypeError', message: 'redirected must be an array, got an object (Object)' });
    await assert.rejects(journal.appendDelta(1, [null as unknown as JournalBlock]), { name: 'TypeError', message: 'blocks[0] must be { home, image }, got null' });
    await assert.rejects(journal.appendDelta(1, [block(1), 7 as unknown as JournalBlock]), { name: 'TypeError', message: 'blocks[1] must be { home, image }, got 7' });
    await journal.close();
  });

  it('homes inside their area, strictly ascending: the logged ones from 0, the redirected ones from the physical area', async () => {
    const { journal, sb } = await fresh(2);
    const H = homeBlocks(sb);
    const P = sb.summaryBlocks + sb.mapBlocks;
    assert.ok(P > 1 && sb.mapBlocks > 0, 'a map between the summary and the physical area');
    const logged = (from: number) => `blocks[0].home must be an integer from ${from} to ${H - 1}`;
    await assert.rejects(journal.appendDelta(1, [block(H)]), { name: 'RangeError', message: `${logged(0)}, got ${H}` });
    await assert.rejects(journal.appendDelta(1, [block(-1)]), { name: 'RangeError', message: `${logged(0)}, got -1` });
    await assert.rejects(journal.appendDelta(1, [block(2.5)]), { name: 'RangeError', message: `${logged(0)}, got 2.5` });
    await assert.rejects(journal.appendDelta(1, [block(4), block(4)]), { name: 'RangeError', message: 'blocks must be sorted by strictly ascending home: blocks[1].home 4 follows 4' });
    const redirected = (n: number, from: number) => `redirected[0] must lie in blocks ${P} to ${H - 1}: it has ${n} block(s) from ${from}`;
    await assert.rejects(journal.appendDelta(1, [], [run(P - 1)]), { name: 'RangeError', message: redirected(1, P - 1) });
    await assert.rejects(journal.appendDelta(1, [], [run(H)]), { name: 'RangeError', message: redirected(1, H) });
    await assert.rejects(journal.appendDelta(1, [], [run(H - 1, 2)]), { name: 'RangeError', message: redirected(2, H - 1) });
    await assert.rejects(journal.appendDelta(1, [], [run(P + 3, 2), run(P + 4)]), {
      name: 'RangeError',
      message: `redirected runs must be sorted by home and apart: redirected[1] starts at ${P + 4}, before ${P + 5}`,
    });
    // The bounds themselves are taken.
    await journal.appendDelta(1, [block(0), block(H - 1)], [run(P), run(H - 1)]);
    const again = await inspectJournal(open[0]);
    assert.deepEqual(again.deltas.map(({ homes, redirected }) => ({ homes, redirected })), [{ homes: [0, H - 1], redirected: [P, H - 1] }]);
    await journal.close();
  });

  it('a version 1 journal refuses redirected blocks; a delta too large names its redirected blocks', async () => {
    const v1 = await fresh(1);
    await assert.rejects(v1.journal.appendDelta(1, [], [run(3)]), { name: 'RangeError', message: 'only a volume of version 2 redirects blocks' });
    await v1.journal.close();
    const v2 = await fresh(2);
    const error = (() => {
      try {
        v2.journal.checkDeltaSize(5, 3, 3000);
      } catch (e) {
        return e as Error & { code?: string };
      }
      return undefined;
    })();
    assert.equal(error?.code, 'ERR_DELTA_TOO_LARGE');
    assert.match(error?.message ?? '', /^delta 5 has 3 logged and 3000 redirected blocks and needs \d+ log blocks, but the log holds 64/);
    await v2.journal.close();
  });

  it('checkpoint takes a non-negative integer (0 does nothing); a closed journal refuses appends and checkpoints', async () => {
    const { journal } = await fresh(1);
    await assert.rejects(journal.checkpoint(-1), { name: 'TypeError', message: 'delta must be a non-negative integer, got -1' });
    await assert.rejects(journal.checkpoint(0.5), { name: 'TypeError', message: 'delta must be a non-negative integer, got 0.5' });
    await journal.checkpoint(0);
    assert.equal(journal.checkpointedDelta, 0);
    await journal.close();
    await assert.rejects(journal.appendDelta(1, [block(1)]), { code: 'ERR_JOURNAL_CLOSED', message: /^the journal of '.*' is closed$/ });
    await assert.rejects(journal.checkpoint(0), { code: 'ERR_JOURNAL_CLOSED' });
  });

  it('a failed journal refuses what follows with ERR_JOURNAL_FAILED, its cause the first error', async () => {
    const inner = await Device.open(join(dir, 'failing.img'), { size: SIZE });
    open.push(inner);
    await formatVolume(inner, { blockSize: B, logBlocks: 64, version: 1 });
    const plan: FaultPlan = {};
    const device = new FaultDevice(inner, plan);
    const { journal } = await JournalWriter.open(device);
    // A wrap-free delta of two images goes out as one durable write: fail that write.
    plan.failWrite = device.writes;
    const writesBefore = device.writes;
    await assert.rejects(journal.appendDelta(1, [block(1), block(2)]), { code: 'EIO' });
    assert.ok(device.writes > writesBefore);
    const cause = device.injected[0];
    for (const attempt of [() => journal.appendDelta(2, [block(3)]), () => journal.checkpoint(0)]) {
      await assert.rejects(attempt(), (error: Error & { code?: string; cause?: unknown }) => {
        assert.equal(error.code, 'ERR_JOURNAL_FAILED');
        assert.equal(error.cause, cause);
        assert.match(error.message, /failed \(.*\); nothing after it is acknowledged: reopen the volume to replay$/);
        return true;
      });
    }
    await journal.close().catch(() => undefined);
  });
});
