import * as fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { BlockforkError } from '../io/errors';
import type { Device } from '../io/device';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, readSuperblock } from '../journal/superblock';
import { formatVolume, MIN_LOG_BLOCKS } from '../journal/volume-format';
import { CliError } from './failure';
import { renderFields } from './key-value';
import { openTarget } from './open-target';
import { checkWritable } from './safety';
import { formatBytes, parseBytes } from '../bench/units';
import { volumeFields, volumeRows, type VolumeFields } from './volume-fields';

/**
 * `blockfork format PATH`: writes a journaled volume's two superblocks
 * (docs/FORMAT.md). Never silent about what was there: a device in use, a
 * known file-system signature, or a blockfork volume (valid or damaged) is
 * refused unless --force.
 */

/** The page size of most machines: a block per page, the cache's sweet spot. */
export const DEFAULT_BLOCK_SIZE = 4096;

export interface FormatOptions {
  blockSize: number;
  logSize?: number;
  formatVersion: 1 | 2;
  reserve?: number;
  size?: number;
  force: boolean;
  json: boolean;
}

export interface FormatReport extends VolumeFields {
  path: string;
  /** PATH did not exist: format created it as a sparse file of --size bytes. */
  created: boolean;
  /** O_DIRECT was used; false where the file system refuses it (buffered I/O, then fdatasync). */
  direct: boolean;
}

export function formatCommand(): Command {
  return new Command('format')
    .description(
      'Format PATH as a journaled blockfork volume: two superblock copies, a log ring and the data area (docs/FORMAT.md); ' +
        'with --format-version 2, a block map, a map summary and a physical area with a reserve in place of the data area. ' +
        'Refuses a block device that is mounted or in use, a target holding a known file-system signature, and an existing ' +
        'blockfork volume, unless --force.',
    )
    .argument('<path>', 'a block device or a file (created with --size if it does not exist)')
    .addOption(
      new Option('--block-size <bytes>', `bytes per block: a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}, a multiple of the sector size`)
        .argParser(blockSizeArgument)
        .default(DEFAULT_BLOCK_SIZE),
    )
    .addOption(
      new Option('--log-size <bytes>', `bytes of the log ring, whole blocks, at least ${MIN_LOG_BLOCKS} (default: an eighth of the device, at most 64 MiB)`).argParser(
        bytesArgument,
      ),
    )
    .addOption(
      new Option('--format-version <1|2>', 'the on-disk format (docs/FORMAT.md): 1 logs every block, 2 redirects long runs through a block map')
        .argParser(formatVersionArgument)
        .default(1),
    )
    .addOption(
      new Option('--reserve <bytes>', 'version 2: bytes of physical space beyond the volume\'s, whole blocks (default: an eighth of the device, from one to four times the log)').argParser(bytesArgument),
    )
    .addOption(new Option('--size <bytes>', 'if PATH does not exist, create it as a sparse file of this size (1G, 256M)').argParser(bytesArgument))
    .option('--force', 'format even a device that is in use, holds a known signature or a blockfork volume', false)
    .option('--json', 'print what was made as JSON on stdout', false)
    .action(async (path: string, options: FormatOptions, command: Command) => {
      const usage = (message: string): never => command.error(`error: ${message}`);
      const logBlocks = logBlocksOf(options, usage);
      const reserveBlocks = reserveBlocksOf(options, usage);
      const report = await format(path, options, logBlocks, reserveBlocks);
      process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : render(report));
    });
}

function blockSizeArgument(text: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes < MIN_BLOCK_SIZE || bytes > MAX_BLOCK_SIZE || (bytes & (bytes - 1)) !== 0) {
    throw new InvalidArgumentError(`expected a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE} (such as 4096 or 4K)`);
  }
  return bytes;
}

function formatVersionArgument(text: string): 1 | 2 {
  if (text !== '1' && text !== '2') throw new InvalidArgumentError('expected 1 or 2');
  return text === '1' ? 1 : 2;
}

function bytesArgument(text: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes === 0) throw new InvalidArgumentError('expected a positive number of bytes (such as 8388608, 8M or 1G)');
  return bytes;
}

/** --log-size in blocks; a size that no device could take is a usage error, found before any I/O. */
function logBlocksOf(options: FormatOptions, usage: (message: string) => never): number | undefined {
  if (options.logSize === undefined) return undefined;
  const { logSize, blockSize } = options;
  if (logSize % blockSize !== 0) usage(`--log-size ${logSize} is not a whole number of ${blockSize}-byte blocks`);
  if (logSize / blockSize < MIN_LOG_BLOCKS) usage(`--log-size ${logSize} is ${logSize / blockSize} blocks of ${blockSize}; the log needs at least ${MIN_LOG_BLOCKS}`);
  return logSize / blockSize;
}

/** --reserve in blocks: version 2 only, whole blocks, at least one. */
function reserveBlocksOf(options: FormatOptions, usage: (message: string) => never): number | undefined {
  if (options.reserve === undefined) return undefined;
  const { reserve, blockSize } = options;
  if (options.formatVersion !== 2) usage(`--reserve goes with --format-version 2 (version ${options.formatVersion} has no reserve)`);
  if (reserve % blockSize !== 0) usage(`--reserve ${reserve} is not a whole number of ${blockSize}-byte blocks`);
  return reserve / blockSize;
}

async function format(path: string, options: FormatOptions, logBlocks: number | undefined, reserveBlocks: number | undefined): Promise<FormatReport> {
  const existing = statIfExists(path);
  if (existing === undefined && options.size === undefined) {
    throw new CliError(`${path} does not exist: pass --size BYTES to create it as a file`);
  }
  if (existing !== undefined) {
    if (!existing.isFile() && !existing.isBlockDevice()) throw new CliError(`${path} is neither a regular file nor a block device`);
    checkWritable(path, options.force);
  }
  const device = await openTarget(path, { size: options.size });
  let formatted = false;
  try {
    const { geometry } = device;
    if (!device.created && options.size !== undefined && geometry.size !== options.size) {
      throw new CliError(
        `${path} exists with ${geometry.size} bytes, not the --size ${options.size}: --size only sizes a new file (drop it, or resize the file first)`,
      );
    }
    if (!options.force) await refuseExistingVolume(device);
    const sb = await formatVolume(device, { blockSize: options.blockSize, logBlocks, overwrite: options.force, version: options.formatVersion, reserveBlocks });
    formatted = true;
    return { path, created: device.created, direct: geometry.direct, ...volumeFields(sb) };
  } finally {
    await device.close();
    // A format that failed leaves no new file behind.
    if (!formatted && device.created) fs.rmSync(path, { force: true });
  }
}

function statIfExists(path: string): fs.Stats | undefined {
  try {
    return fs.statSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * formatVolume refuses only a *valid* volume; the command also refuses one
 * whose superblocks are damaged: `blockfork check` may still say what is
 * there, and the data area is someone's data all the same.
 */
async function refuseExistingVolume(device: Device): Promise<void> {
  let what: string;
  try {
    const { superblock: sb } = await readSuperblock(device);
    what = `a blockfork volume (block size ${sb.blockSize}, ${sb.blockCount} data blocks, checkpoint delta ${sb.checkpointDelta})`;
  } catch (error) {
    if (!(error instanceof BlockforkError)) throw error;
    if (error.code === 'ERR_NOT_A_VOLUME') return;
    what = `a damaged blockfork volume (${error.message})`;
  }
  throw new CliError(`refusing to format ${device.path}: it already holds ${what}; pass --force to format it anew`);
}

function render(r: FormatReport): string {
  return renderFields([
    ['formatted', `${r.path}${r.created ? ' (created)' : ''}`],
    ...volumeRows(r),
    ['device size', `${r.deviceSize} bytes (${formatBytes(r.deviceSize)})${r.direct ? '' : '; O_DIRECT refused here, formatted with buffered I/O and fdatasync'}`],
  ]);
}
