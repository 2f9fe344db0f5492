import * as fs from 'node:fs';
import { Device } from '../../src/io/device';
import { Volume, type VolumeOptions } from '../../src/volume';
import { FaultDevice, type FaultPlan } from './fault-device';
import { turns } from './random';
import { TempDir } from './temp';

export interface RealVolume {
  readonly vol: Volume;
  /** The real Device (O_DIRECT on a temp file) behind a FaultDevice that can hold or fail requests. */
  readonly device: FaultDevice;
  readonly path: string;
}

/** A volume on a new O_DIRECT temp file of `size` bytes, through a FaultDevice. */
export async function realVolume(temp: TempDir, size: number, options: VolumeOptions = {}, plan: FaultPlan = {}): Promise<RealVolume> {
  const path = temp.file();
  const device = new FaultDevice(await Device.open(path, { size, direct: true }), plan);
  return { vol: Volume.over(device, options), device, path };
}

export interface VolumesPerTest {
  /** A new file name in this test's temp directory. */
  file(): string;
  /** Closes this volume after the test, even when the test fails. */
  track(vol: Volume): void;
}

/** For a describe block whose tests open their own volumes: a fresh temp directory per test, and each tracked volume closed afterwards. */
export function volumesPerTest(): VolumesPerTest {
  let temp: TempDir;
  const opened: Volume[] = [];
  beforeEach(() => {
    temp = new TempDir();
  });
  afterEach(async () => {
    for (const vol of opened.splice(0)) await vol.close().catch(() => undefined);
    temp.remove();
  });
  return { file: () => temp.file(), track: (vol) => void opened.push(vol) };
}

export interface RealVolumesPerTest {
  /** A volume on a new temp file of `size` bytes (through a FaultDevice with `plan`), closed after the test. */
  open(size: number, options?: VolumeOptions, plan?: FaultPlan): Promise<RealVolume>;
  /** Closes this volume after the test too (one the test opened itself). */
  track(real: RealVolume): void;
}

/**
 * For a describe block: a fresh temp directory per test, and every volume
 * opened through it closed afterwards, even when the test fails.
 */
export function realVolumesPerTest(): RealVolumesPerTest {
  let temp: TempDir;
  const open: RealVolume[] = [];
  beforeEach(() => {
    temp = new TempDir();
  });
  afterEach(async () => {
    // A test that failed with requests held would leave its volume unable to close.
    for (const { device } of open) device.releaseAll();
    for (const { vol } of open.splice(0)) await vol.close().catch(() => undefined);
    temp.remove();
  });
  return {
    async open(size, options = {}, plan = {}) {
      const real = await realVolume(temp, size, options, plan);
      open.push(real);
      return real;
    },
    track(real) {
      open.push(real);
    },
  };
}

/** Bytes of the file as the device holds them, read outside the volume. */
export function fileBytes(path: string, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  const fd = fs.openSync(path, 'r');
  try {
    fs.readSync(fd, out, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** Turns the event loop until `condition` holds; throws if it never does. */
export async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (condition()) return;
    await turns(1);
  }
  throw new Error(`never happened: ${what}`);
}

/** Whether a promise has settled, seen after letting the event loop turn a while. */
export async function settles(promise: Promise<unknown>, turnsToWait = 50): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await turns(turnsToWait);
  return settled;
}
