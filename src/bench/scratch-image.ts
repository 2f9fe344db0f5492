import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Device } from '../io/device';
import { Slab } from '../io/slab';
import { oneLine } from '../io/error-chain';
import { BenchError } from './bench-error';
import { formatBytes } from './units';

/**
 * The image file a bench writes on when it is given no PATH. It must live on
 * a file system that does O_DIRECT for real: tmpfs and ramfs refuse it, and
 * even where they would not, memory is not what a block benchmark measures.
 * So each candidate directory is checked by its statfs type and then probed
 * with a real O_DIRECT write.
 */
export interface ScratchImage {
  readonly path: string;
  /** The file system type it lives on, in words (`ext4`). */
  readonly fileSystem: string;
  /** Deletes the image; harmless twice. */
  remove(): void;
}

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const FILE_SYSTEMS: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0xf2f52010: 'f2fs',
  0x2fc12fc1: 'zfs',
  0x794c7630: 'overlayfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
  [TMPFS_MAGIC]: 'tmpfs',
  [RAMFS_MAGIC]: 'ramfs',
};

function fileSystemName(type: number): string {
  return FILE_SYSTEMS[type] ?? `file system 0x${type.toString(16)}`;
}

/** $TMPDIR first (the user's choice), then the usual disk-backed places. */
function candidates(): string[] {
  const dirs = [process.env.TMPDIR, '/var/tmp', os.tmpdir(), process.cwd()];
  return [...new Set(dirs.filter((d): d is string => typeof d === 'string' && d.length > 0).map((d) => path.resolve(d)))];
}

/** Why `dir` cannot hold the image, or undefined when it can. */
async function unsuitable(dir: string, size: number): Promise<string | undefined> {
  let stats: fs.StatsFs;
  try {
    stats = fs.statfsSync(dir);
  } catch (error) {
    return oneLine(error);
  }
  if (stats.type === TMPFS_MAGIC || stats.type === RAMFS_MAGIC) return `${fileSystemName(stats.type)} (memory, no O_DIRECT)`;
  const free = stats.bavail * stats.bsize;
  if (free < size) return `only ${formatBytes(free)} free`;
  const probe = path.join(dir, `.blockfork-probe-${crypto.randomBytes(4).toString('hex')}`);
  const slab = Slab.alloc(65536, 1);
  try {
    const device = await Device.open(probe, { size: 65536, engine: 'threads', queueDepth: 1 });
    try {
      await device.run([{ op: 'write', offset: 0, buffers: [slab.page(0)] }]);
    } finally {
      await device.close();
    }
  } catch (error) {
    return `O_DIRECT probe failed: ${oneLine(error)}`;
  } finally {
    slab.release();
    fs.rmSync(probe, { force: true });
  }
  return undefined;
}

/** The first candidate directory with room for `size` bytes where O_DIRECT really works. */
export async function chooseScratchDirectory(size: number): Promise<{ dir: string; fileSystem: string }> {
  const refused: string[] = [];
  for (const dir of candidates()) {
    const reason = await unsuitable(dir, size);
    if (reason === undefined) return { dir, fileSystem: fileSystemName(fs.statfsSync(dir).type) };
    refused.push(`${dir}: ${reason}`);
  }
  throw new BenchError(
    `no directory here can hold a ${formatBytes(size)} O_DIRECT scratch image (${refused.join('; ')}); set TMPDIR to a disk-backed directory or pass PATH`,
  );
}

/**
 * Creates a sparse image of `size` bytes in the first suitable directory and
 * removes it again if the process is interrupted. The caller removes it when
 * done.
 */
export async function createScratchImage(size: number): Promise<ScratchImage> {
  const { dir, fileSystem } = await chooseScratchDirectory(size);
  const file = path.join(dir, `blockfork-bench-${crypto.randomBytes(4).toString('hex')}.img`);
  const device = await Device.open(file, { size, engine: 'threads', queueDepth: 1 });
  await device.close();
  return track(file, fileSystem);
}

function track(file: string, fileSystem: string): ScratchImage {
  const onSignal = (signal: NodeJS.Signals): void => {
    remove();
    // Die of the same signal, as the shell expects of an interrupted command.
    process.kill(process.pid, signal);
  };
  const remove = (): void => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    fs.rmSync(file, { force: true });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { path: file, fileSystem, remove };
}
