import { Device } from '../io/device';
import { Slab } from '../io/slab';
import { open, type OpenOptions, type Volume } from '../volume';
import { Prng } from './prng';
import type { Target } from './subject';

/** Bytes at the start of a device that hold a journaled volume's superblocks (blocks 0 and 1 of at most 64 KiB). */
const SUPERBLOCK_SPAN = 128 << 10;

/**
 * The volume a cache workload runs on: the bench's target opened as a user
 * would open it, with every option the workload does not name left at its
 * default, so that the numbers are the ones a user gets.
 */
export type Mode = 'ordered' | 'journal' | 'journal-v2';

/**
 * Opens the target in `mode`. The bench owns the target (it has passed the
 * safety checks, and every workload writes over it): journal mode formats it
 * afresh, and ordered mode first wipes the superblocks a journal run left,
 * which ordered mode would otherwise refuse to write over.
 */
export async function openVolume(target: Target, mode: Mode, options: OpenOptions = {}): Promise<Volume> {
  if (mode !== 'ordered') {
    const formatVersion = mode === 'journal-v2' ? 2 : 1;
    return open(target.path, { ...options, journal: true, format: true, logSize: benchLogSize(target), formatVersion });
  }
  await wipeSuperblocks(target.path);
  return open(target.path, { ...options, journal: false });
}

/**
 * The log a journal run formats: the default (an eighth of the region, at
 * most 64 MiB), but at least 4 MiB, so that a change of 256 blocks (as the
 * stream and random workloads make) fits in the log of a small --quick
 * target.
 */
export function benchLogSize(target: Target): number {
  const MiB = 1 << 20;
  return Math.max(4 * MiB, Math.min(64 * MiB, Math.floor(target.region / 8 / MiB) * MiB));
}

/** Zeroes the first 128 KiB, where both superblock copies lie whatever the block size. */
export async function wipeSuperblocks(path: string): Promise<void> {
  const device = await Device.open(path);
  const slab = Slab.alloc(SUPERBLOCK_SPAN, 1);
  try {
    const span = Math.min(SUPERBLOCK_SPAN, Math.floor(device.geometry.size / device.geometry.logicalSectorSize) * device.geometry.logicalSectorSize);
    if (span > 0) {
      await device.run([{ op: 'write', offset: 0, buffers: [Buffer.from(slab.memory, 0, span)] }]);
      await device.flush();
    }
  } finally {
    slab.release();
    await device.close();
  }
}

/**
 * Blocks of the target's region that the volume can use: a journal keeps
 * room for its log, so a journaled volume may hold fewer than the region.
 */
export function usableBlocks(volume: Volume, target: Target): number {
  return Math.min(Math.floor(target.region / volume.blockSize), volume.blockCount);
}

/**
 * A block of seeded noise to write: data that no layer below can compress or
 * skip as zeroes (as fio's and the raw engine's buffers are). Writers stamp
 * each block's number over its first bytes, so no two blocks are alike.
 */
export function noiseBlock(size: number, seed: number): Buffer {
  const block = Buffer.alloc(size);
  const prng = new Prng(seed ^ 0x85ebca6b);
  for (let i = 0; i < size; i += 4) block.writeUInt32LE(prng.next32(), i);
  return block;
}
