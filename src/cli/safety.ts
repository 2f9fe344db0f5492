import * as fs from 'node:fs';
import { CliError } from './failure';
import { deviceUse } from './mounts';
import { findSignature } from './signatures';

/**
 * The guard before a command writes over PATH. A benchmark must never destroy
 * a user's data by surprise: a block device that is in use, or any target
 * whose first blocks carry a known signature, is refused unless --force.
 * (A file is checked for signatures too: a disk image is data as well.)
 */
export function checkWritable(path: string, force: boolean): void {
  if (force) return;
  const problems: string[] = [];
  if (fs.statSync(path).isBlockDevice()) problems.push(...deviceUse(path).reasons);
  const signature = findSignature(path);
  if (signature) problems.push(`it holds a ${signature.name} signature (${signature.where})`);
  if (problems.length > 0) {
    throw new CliError(`refusing to write on ${path}: ${problems.join('; ')}; pass --force to overwrite it`);
  }
}
