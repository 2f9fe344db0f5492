import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/**
 * A real block device for tests: a loop device (`losetup --find --show`)
 * over a backing file. Attaching needs root and /dev/loop-control; tests skip
 * with the reason `loopDeviceUnavailable()` gives, and nowhere else.
 *
 * Every attached device is detached by `detach()` (call it from after() or a
 * finally) and, as a last resort, when the process exits, so that a failing
 * test never leaves a loop device behind.
 */

export interface LoopDevice {
  /** /dev/loopN */
  readonly path: string;
  readonly backingFile: string;
  /** Harmless twice. */
  detach(): void;
}

const attached = new Set<string>();
let exitHookInstalled = false;

function run(command: string, args: readonly string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function hasCommand(name: string): boolean {
  try {
    run('sh', ['-c', `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

/** Why no loop device can be set up here, or undefined if one can. */
export function loopDeviceUnavailable(): string | undefined {
  if (!fs.existsSync('/dev/loop-control')) return 'there is no /dev/loop-control (loop devices unsupported here)';
  if (!hasCommand('losetup')) return 'losetup is not installed (apt-get install mount)';
  if (!hasCommand('blockdev')) return 'blockdev is not installed (apt-get install util-linux)';
  return undefined;
}

function detachQuietly(device: string): void {
  try {
    run('losetup', ['--detach', device]);
  } catch {
    // Already gone: the goal is reached.
  }
  attached.delete(device);
}

/**
 * Attaches a loop device over `backingFile` (which must exist, sized).
 * `sectorSize` sets the device's logical sector size (512 by default).
 */
export function attachLoopDevice(backingFile: string, options: { sectorSize?: number } = {}): LoopDevice {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const device of [...attached]) detachQuietly(device);
    });
  }
  const args = ['--find', '--show'];
  if (options.sectorSize !== undefined) args.push('--sector-size', String(options.sectorSize));
  args.push(backingFile);
  const device = run('losetup', args);
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed ${JSON.stringify(device)}, not a loop device`);
  attached.add(device);
  return { path: device, backingFile, detach: () => detachQuietly(device) };
}

/** The kernel's own account of a block device, by `blockdev`. */
export function blockdevGeometry(device: string): { size: number; logicalSectorSize: number; physicalSectorSize: number } {
  return {
    size: Number(run('blockdev', ['--getsize64', device])),
    logicalSectorSize: Number(run('blockdev', ['--getss', device])),
    physicalSectorSize: Number(run('blockdev', ['--getpbsz', device])),
  };
}
