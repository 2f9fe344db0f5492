import * as fs from 'node:fs';

/**
 * Whether the system is using a block device: mounted (itself or one of its
 * partitions), active as swap, or held by another device (device-mapper,
 * LVM, md). Writing on a device in use corrupts a live file system.
 */
export interface DeviceUse {
  /** Why the device counts as in use, in words: `mounted on /home (/dev/sda1)`. */
  readonly reasons: readonly string[];
}

/** `major:minor` of a block device node. */
export function deviceNumber(path: string): string {
  const rdev = fs.statSync(path, { bigint: true }).rdev;
  // glibc's encoding of dev_t (gnu_dev_major, gnu_dev_minor).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** The device numbers that stand for `number`: itself and, for a partition, its whole disk. */
function withParent(number: string): string[] {
  const sys = `/sys/dev/block/${number}`;
  if (!fs.existsSync(`${sys}/partition`)) return [number];
  try {
    return [number, fs.readFileSync(`${sys}/../dev`, 'utf8').trim()];
  } catch {
    return [number];
  }
}

/** /proc/mounts and /proc/swaps escape spaces and such as octal: `\040`. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function blockDeviceNumber(path: string): string | undefined {
  try {
    if (!fs.statSync(path).isBlockDevice()) return undefined;
    return deviceNumber(path);
  } catch {
    return undefined;
  }
}

function readLines(path: string): string[] {
  try {
    return fs.readFileSync(path, 'utf8').split('\n').filter((line) => line.length > 0);
  } catch {
    return [];
  }
}

export function deviceUse(path: string): DeviceUse {
  const target = deviceNumber(path);
  const reasons: string[] = [];
  for (const line of readLines('/proc/mounts')) {
    const [source, mountPoint] = line.split(' ').map(unescape);
    if (!source.startsWith('/')) continue;
    const number = blockDeviceNumber(source);
    if (number !== undefined && withParent(number).includes(target)) {
      reasons.push(`mounted on ${mountPoint}${number === target ? '' : ` (${source})`}`);
    }
  }
  for (const line of readLines('/proc/swaps').slice(1)) {
    const source = unescape(line.split(/\s+/)[0]);
    const number = blockDeviceNumber(source);
    if (number !== undefined && withParent(number).includes(target)) reasons.push(`active swap (${source})`);
  }
  let holders: string[] = [];
  try {
    holders = fs.readdirSync(`/sys/dev/block/${target}/holders`);
  } catch {
    // No sysfs entry (containers without /sys): nothing more to learn.
  }
  if (holders.length > 0) reasons.push(`held by ${holders.join(', ')}`);
  return { reasons };
}
