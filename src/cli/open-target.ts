import { Device, type DeviceOptions } from '../io/device';
import type { SystemError } from '../io/errors';

/**
 * Opens PATH for a CLI command that works on a volume's metadata: O_DIRECT
 * where the file system allows it, else buffered I/O (tmpfs, some network
 * file systems refuse O_DIRECT with EINVAL at open). Format and check flush
 * or only read, so neither needs O_DIRECT to be correct: refusing those file
 * systems would help no one.
 */
export async function openTarget(path: string, options: Pick<DeviceOptions, 'readOnly' | 'size'>): Promise<Device> {
  const base: DeviceOptions = { ...options, engine: 'threads', queueDepth: 4 };
  try {
    return await Device.open(path, { ...base, direct: true });
  } catch (error) {
    if ((error as SystemError).code !== 'EINVAL' || (error as SystemError).syscall !== 'open') throw error;
    return Device.open(path, { ...base, direct: false });
  }
}
