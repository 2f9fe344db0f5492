import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Temporary directories for tests that need real O_DIRECT: on a file system
 * picked on purpose, never tmpfs or ramfs (tmpfs accepts O_DIRECT on recent
 * kernels but buffers it all the same, and ramfs refuses it), and proven by
 * a probe that opens a file there with O_DIRECT.
 *
 * BLOCKFORK_TEST_DIR, when set, is tried first.
 */

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

export interface ScratchDir {
  readonly path: string;
  /** A path inside the directory (the file is not created). */
  file(name: string): string;
  /** Removes the directory and everything in it. Harmless twice. */
  remove(): void;
}

let root: string | undefined;

/** Why `dir` cannot hold O_DIRECT test files, or undefined if it can. */
function unsuitable(dir: string): string | undefined {
  let type: number;
  try {
    type = fs.statfsSync(dir).type;
  } catch (error) {
    return `statfs failed: ${(error as Error).message}`;
  }
  if (type === TMPFS_MAGIC) return 'tmpfs';
  if (type === RAMFS_MAGIC) return 'ramfs';
  const probe = path.join(dir, `.blockfork-odirect-probe-${process.pid}`);
  try {
    const fd = fs.openSync(probe, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT, 0o600);
    fs.closeSync(fd);
    return undefined;
  } catch (error) {
    return `O_DIRECT open failed: ${(error as Error).message}`;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** The directory under which scratch directories are made; throws if none fits. */
export function directIoRoot(): string {
  if (root !== undefined) return root;
  const candidates = [process.env.BLOCKFORK_TEST_DIR, os.tmpdir(), '/var/tmp', path.resolve(__dirname, '..', '..')].filter(
    (d): d is string => typeof d === 'string' && d.length > 0 && fs.existsSync(d),
  );
  const refused: string[] = [];
  for (const dir of candidates) {
    const why = unsuitable(dir);
    if (why === undefined) return (root = dir);
    refused.push(`${dir}: ${why}`);
  }
  throw new Error(`no directory here supports O_DIRECT (set BLOCKFORK_TEST_DIR): ${refused.join('; ')}`);
}

/** A fresh directory on a file system that supports O_DIRECT. */
export function makeScratchDir(label: string): ScratchDir {
  const dir = fs.mkdtempSync(path.join(directIoRoot(), `blockfork-${label}-`));
  return {
    path: dir,
    file: (name) => path.join(dir, name),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
