import assert from 'node:assert/strict';
import { Volume } from '../src/volume';
import { FaultDevice, type FaultPlan } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { until } from './support/volumes';

// Faults come from a FaultDevice over a MemoryDevice: the real Device cannot
// be made to fail on command, and the memory device shows what a power cut
// would leave (`durable`), so "nothing reported durable that is not" can be
// checked exactly.

const BLOCK = 4096;

function setup(plan: FaultPlan): { vol: Volume; memory: MemoryDevice; device: FaultDevice } {
  const memory = new MemoryDevice({ size: 64 * BLOCK, path: '/dev/fake' });
  const device = new FaultDevice(memory, plan);
  return { vol: Volume.over(device, { maxDeltas: 2 }), memory, device };
}

async function writeBlocks(vol: Volume, blocks: number[], value: number): Promise<void> {
  await vol.change(async (tx) => {
    for (const b of blocks) (await tx.write(b)).fill(value);
  });
}

function isEio(syscall: string) {
  return (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, 'EIO');
    assert.equal(error.errno, -5);
    assert.equal(error.syscall, syscall);
    assert.equal(error.path, '/dev/fake');
    assert.match(error.message, new RegExp(`^EIO: i/o error, ${syscall} '/dev/fake'`));
    return true;
  };
}

describe('G6: faults', () => {
  for (const [what, plan, syscall] of [
    ['a failed write', { failWrite: 1 }, 'pwritev'],
    // Delta 1 (one run) is written with RWF_DSYNC and needs no flush; delta 2 (two runs) flushes.
    ['a failed flush', { failFlush: 0 }, 'fdatasync'],
  ] as const) {
    it(`${what} rejects that commit and every later one with the system error, and the volume refuses changes`, async () => {
      const { vol, memory, device } = setup(plan);
      await writeBlocks(vol, [0], 1);
      assert.equal(await vol.commit(), 1);
      await writeBlocks(vol, [1, 5], 2);
      await assert.rejects(vol.commit(), isEio(syscall));
      const error = device.injected[0];
      await assert.rejects(vol.commit(), (e) => e === error);
      assert.equal(vol.failure, error);

      await assert.rejects(vol.change(async () => undefined), (e: Error & { code: string }) => {
        assert.equal(e.code, 'ERR_VOLUME_FAILED');
        assert.equal(e.cause, error);
        return true;
      });
      assert.deepEqual(await vol.read(5), Buffer.alloc(BLOCK, 2), 'reads of cached data still work');
      assert.deepEqual(await vol.read(9), Buffer.alloc(BLOCK), 'and of data not cached');
      assert.equal(vol.stats().durableDelta, 1, 'nothing after delta 1 is reported durable');
      if (syscall === 'pwritev') assert.deepEqual(memory.durable.subarray(BLOCK, 2 * BLOCK), Buffer.alloc(BLOCK), 'delta 2 is not durable');
      assert.deepEqual(memory.durable.subarray(0, BLOCK), Buffer.alloc(BLOCK, 1), 'delta 1 is');

      await assert.rejects(vol.close(), (e) => e === error);
      assert.equal(memory.closed, true, 'close() closed the device all the same');
      await vol.close();
    });
  }

  it('a failure in delta N fails delta N+1 in flight behind it, which writes nothing', async () => {
    const { vol, device } = setup({ failWrite: 0 });
    await writeBlocks(vol, [0], 1);
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    await writeBlocks(vol, [2], 2);
    const second = vol.commit();
    await until(() => vol.stats().deltasInFlight === 2, 'delta 2 in flight');
    release();
    await assert.rejects(first, isEio('pwritev'));
    await assert.rejects(second, (e) => e === device.injected[0]);
    assert.equal(device.writes, 1, 'delta 2 never reached the device');
    assert.equal(vol.stats().durableDelta, 0);
    await vol.close().catch(() => undefined);
  });

  it('a write in a change under way when the volume fails rejects with the cause', async () => {
    const { vol, device } = setup({ failWrite: 0 });
    await writeBlocks(vol, [0], 1);
    const release = device.hold();
    const commit = vol.commit();
    await vol.change(async (tx) => {
      release();
      await assert.rejects(commit, isEio('pwritev'));
      await assert.rejects(tx.write(3), (e: Error & { code: string }) => e.code === 'ERR_VOLUME_FAILED' && e.cause === device.injected[0]);
    });
    await vol.close().catch(() => undefined);
  });

  it('a failed read rejects that read only; the volume goes on', async () => {
    const { vol } = setup({ failRead: 0 });
    await assert.rejects(vol.read(3), isEio('preadv'));
    await vol.change(async (tx) => (await tx.write(3)).fill(3));
    assert.equal(await vol.commit(), 1);
    assert.deepEqual(await vol.read(3), Buffer.alloc(BLOCK, 3));
    await vol.close();
  });
});
