import { Command } from 'commander';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { BlockWindow } from '../io/window';
import { loadBlockMap } from '../journal/block-map';
import { inspectJournal, replayInMemory, type JournalReport } from '../journal/replay';
import { ReplayedView } from '../journal/replayed-view';
import { homeBlocks, VERSION_2, type Superblock, type SuperblockCopy } from '../journal/superblock';
import { CliError } from './failure';
import { renderFields } from './key-value';
import { openTarget } from './open-target';
import { strandedDeltas, type StrandedDelta } from './stranded-deltas';
import { volumeFields, volumeRows, type VolumeFields } from './volume-fields';

/**
 * `blockfork check PATH`: the replay walk of docs/FORMAT.md, writing nothing
 * (PATH is opened O_RDONLY, so the kernel refuses any write). It reports each
 * superblock copy, the deltas replay would apply, where and why the walk
 * stops, and a verdict that decides the exit status (see EXIT_STATUS_HELP).
 *
 * Version 2 also checks the block map as an open would find it: the map at
 * home with the replay walk's result applied (the map and summary blocks
 * that pending deltas log patched over, in memory, as a read-only open
 * does), so that a map block torn by a crash during home writes, which
 * replay rewrites, is not taken for damage. It reports which map and
 * summary blocks replay would rewrite, the map blocks in use, and the
 * physical blocks used and free (the free space open rebuilds from the map).
 */

/** The exit statuses, in --help: which damage is normal after a crash and which is not. */
export const EXIT_STATUS_HELP = `
Exit status:
  0  consistent: a superblock copy is in force and replay brings the volume to
     its last committed delta. Committed deltas pending replay, one damaged
     superblock copy (the next checkpoint rewrites it) and a torn delta at the
     end of the log (what a crash during a commit leaves; it was never
     acknowledged) are all normal.
  1  not a blockfork volume; no valid superblock; the volume does not fit the
     device; or a corrupt record in the middle of the log, that is, with
     deltas logged after it. The writer starts a delta only once the previous
     one is durable, so the damaged delta had been committed (acknowledged),
     and replay, which ends at the first bad record, would drop it and every
     delta after it: data loss, not a crash. Also, in a volume of version 2,
     a corrupt block map (as replay would leave it): a map block the summary
     flags that is damaged or was never written, or a physical block that two
     volume blocks reference. Also any I/O error.
  2  usage error.`;

type CopyState = 'in force' | 'valid' | 'damaged' | 'missing';

export interface CopyReport {
  copy: 0 | 1;
  /** Byte offset it was read at; -1 when copy 1 was looked for at every possible offset and not found. */
  offset: number;
  state: CopyState;
  sequence?: number;
  checkpointDelta?: number;
  /** What is wrong with it (damaged or missing). */
  problem?: string;
}

export interface DeltaReport {
  delta: number;
  position: number;
  blocks: number;
  homes: number[];
  /** Version 2 only: home blocks (in the physical area) the delta wrote in place of the log. */
  redirected?: number[];
}

/**
 * Version 2: the block map as an open would load it, that is, at home with
 * the pending deltas' logged map and summary blocks applied (in memory).
 */
export interface MapReport {
  state: 'ok' | 'damaged';
  /** What is wrong (damaged), naming the map or summary block. */
  problem?: string;
  /** Home blocks of the map summary and the block map that replay would rewrite (logged by pending deltas); empty: the map at home is the map. */
  replayRewrites: number[];
  summaryBlocks: number;
  mapBlocks: number;
  /** Map blocks the summary flags (holding an entry that is not identity); the others are identity and are not read. */
  mapBlocksInUse?: number;
  physicalBlocks: number;
  /** Physical blocks the map references (one per volume block) and the free rest: the free space open rebuilds. */
  physicalUsed?: number;
  physicalFree?: number;
}

export interface CheckReport {
  path: string;
  consistent: boolean;
  /** One line: what `check` concludes (also the stderr line when not consistent). */
  verdict: string;
  /** The superblock in force; null when there is none. */
  volume: VolumeFields | null;
  superblocks: CopyReport[];
  /** What replay would write home, in order. */
  replay: DeltaReport[];
  /** Where the walk ended: `end` of the log, or a `torn` (damaged or incomplete) record, and why. */
  stop: { position: number; kind: 'end' | 'torn'; reason: string } | null;
  /** Deltas logged after the stop (valid descriptors of this lap): the stop is damage, not a crash (exit 1). */
  stranded: StrandedDelta[];
  /** Version 2: the block map; null in version 1 (and when there is no volume). */
  map: MapReport | null;
}

export function checkCommand(): Command {
  return new Command('check')
    .description(
      'Check a blockfork volume without writing to it: both superblock copies (which is in force, which is damaged and why), ' +
        'the deltas that replay would apply from the checkpoint, where and why the log walk stops, and in a volume of version 2 the block map.',
    )
    .argument('<path>', 'a block device or a file holding a volume')
    .option('--json', 'print the report as JSON on stdout (also when the verdict is exit 1)', false)
    .addHelpText('after', EXIT_STATUS_HELP)
    .action(async (path: string, options: { json: boolean }) => {
      const report = await check(path);
      const printed = options.json ? JSON.stringify(report, null, 2) + '\n' : report.volume === null ? '' : render(report);
      process.stdout.write(printed);
      if (!report.consistent) throw new CliError(report.verdict);
    });
}

export async function check(path: string): Promise<CheckReport> {
  const device = await openTarget(path, { readOnly: true });
  try {
    return await examine(device);
  } finally {
    await device.close();
  }
}

/** The check of a device already open (read-only is enough): what `check` reports for it. */
export async function examine(io: BlockIo): Promise<CheckReport> {
  let journal: JournalReport;
  try {
    journal = await inspectJournal(io);
  } catch (error) {
    if (!(error instanceof BlockforkError)) throw error;
    if (error.code === 'ERR_NOT_A_VOLUME') {
      return unusable(io.path, `${io.path}: not a blockfork volume: no superblock magic ("blkfork") in copy 0 (byte 0) or copy 1`);
    }
    if (error.code === 'ERR_SUPERBLOCK_CORRUPT' || error.code === 'ERR_GEOMETRY') {
      return unusable(io.path, `damaged beyond what replay handles: ${error.message}`);
    }
    throw error;
  }
  const { superblock: sb, stop } = journal;
  const stranded = await strandedDeltas(io, sb, stop.position);
  const superblocks = journal.copies.map((c) => copyReport(c, sb.sequence));
  const v2 = sb.version === VERSION_2;
  const replay: DeltaReport[] = journal.deltas.map((d) => ({
    delta: d.delta,
    position: d.position,
    blocks: d.homes.length,
    homes: [...d.homes],
    ...(v2 ? { redirected: [...d.redirected] } : {}),
  }));
  const map = v2 ? await checkMap(io, sb, journal) : null;
  return {
    path: io.path,
    consistent: stranded.length === 0 && map?.state !== 'damaged',
    verdict: verdict(replay, stop, superblocks, stranded, map),
    volume: volumeFields(sb),
    superblocks,
    replay,
    stop: { position: stop.position, kind: stop.kind, reason: stop.reason },
    stranded,
    map,
  };
}

/**
 * Loads the block map of a version 2 volume as open would (loadBlockMap over
 * the home area), with the replay walk's result applied: when pending
 * deltas log map or summary blocks, the walk is repeated in memory and its
 * images are read in place of the blocks at home. ERR_MAP_CORRUPT is the
 * report's `damaged`; any other error is thrown.
 */
async function checkMap(io: BlockIo, sb: Superblock, journal: JournalReport): Promise<MapReport> {
  const metadata = sb.summaryBlocks + sb.mapBlocks;
  const rewrites = new Set<number>();
  for (const d of journal.deltas) for (const h of d.homes) if (h < metadata) rewrites.add(h);
  let home: BlockIo = new BlockWindow(io, sb.dataStart * sb.blockSize, homeBlocks(sb) * sb.blockSize);
  if (rewrites.size > 0) home = new ReplayedView(home, sb.blockSize, (await replayInMemory(io)).blocks);
  const base = {
    replayRewrites: [...rewrites].sort((a, b) => a - b),
    summaryBlocks: sb.summaryBlocks,
    mapBlocks: sb.mapBlocks,
    physicalBlocks: sb.physicalBlocks,
  };
  try {
    const loaded = await loadBlockMap(home, sb);
    const { allocator } = loaded;
    return { state: 'ok', ...base, mapBlocksInUse: loaded.mapBlocksRead, physicalUsed: allocator.used, physicalFree: allocator.free };
  } catch (error) {
    if (!(error instanceof BlockforkError) || error.code !== 'ERR_MAP_CORRUPT') throw error;
    const problem = error.message.startsWith('the block map') ? error.message : `the block map is damaged: ${error.message}`;
    return { state: 'damaged', problem, ...base };
  }
}

function unusable(path: string, verdict: string): CheckReport {
  return { path, consistent: false, verdict, volume: null, superblocks: [], replay: [], stop: null, stranded: [], map: null };
}

function copyReport(c: SuperblockCopy, inForce: number): CopyReport {
  const base = { copy: c.copy, offset: c.offset };
  if (c.superblock === undefined) return { ...base, state: c.missing ? 'missing' : 'damaged', problem: c.error };
  return {
    ...base,
    state: c.superblock.sequence === inForce ? 'in force' : 'valid',
    sequence: c.superblock.sequence,
    checkpointDelta: c.superblock.checkpointDelta,
  };
}

function verdict(
  replay: DeltaReport[],
  stop: { position: number; kind: string; reason: string },
  copies: CopyReport[],
  stranded: StrandedDelta[],
  map: MapReport | null,
): string {
  if (stranded.length === 0 && map?.state === 'damaged') {
    return `damaged beyond what replay handles: ${map.problem}${map.replayRewrites.length > 0 ? ' (with the pending deltas replayed in memory)' : ''}`;
  }
  if (stranded.length > 0) {
    const lost = stranded.map((s) => `delta ${s.delta} at log position ${s.position}`).join(', ');
    return (
      `damaged beyond what replay handles: the log walk stops at position ${stop.position} (${stop.reason}), ` +
      `yet deltas were logged after it (${lost}): the damaged delta had been committed, and replay would drop it and every delta after it`
    );
  }
  const parts = [replay.length === 0 ? 'consistent: nothing to replay' : `consistent: replay would apply ${replay.length} ${replay.length === 1 ? 'delta' : 'deltas'}`];
  if (stop.kind === 'torn') parts.push('the log ends in a torn delta, as a crash during a commit leaves it: replay ignores it');
  for (const c of copies) {
    if (c.state === 'damaged' || c.state === 'missing') parts.push(`superblock copy ${c.copy} is ${c.state} (the next checkpoint rewrites it)`);
  }
  return parts.join('; ');
}

/** Home blocks in the table: the first few, then how many more (--json lists them all). */
const HOMES_SHOWN = 8;
/** Deltas in the table: a log may hold thousands. */
const DELTAS_SHOWN = 32;

function render(r: CheckReport): string {
  const fields: [string, string][] = [['path', r.path], ...volumeRows(r.volume!)];
  for (const c of r.superblocks) {
    const where = c.offset >= 0 ? `byte ${c.offset}` : 'not found';
    const state = c.problem === undefined ? `${c.state} (sequence ${c.sequence}, checkpoint delta ${c.checkpointDelta})` : `${c.state}: ${c.problem}`;
    fields.push([`superblock ${c.copy}`, `${where}: ${state}`]);
  }
  fields.push(['replay from', `log position ${r.volume!.replayPosition}, after delta ${r.volume!.checkpointDelta}`]);
  fields.push(['replay', r.replay.length === 0 ? 'nothing to apply' : `would apply ${r.replay.length} ${r.replay.length === 1 ? 'delta' : 'deltas'}`]);
  for (const d of r.replay.slice(0, DELTAS_SHOWN)) {
    const homes = d.homes.slice(0, HOMES_SHOWN).join(', ') + (d.homes.length > HOMES_SHOWN ? `, … (${d.homes.length - HOMES_SHOWN} more)` : '');
    const redirected = d.redirected === undefined || d.redirected.length === 0 ? '' : `, ${d.redirected.length} redirected`;
    fields.push([`  delta ${d.delta}`, `log position ${d.position}: ${d.blocks} ${d.blocks === 1 ? 'block' : 'blocks'}${d.blocks > 0 ? ` (home ${homes})` : ''}${redirected}`]);
  }
  if (r.replay.length > DELTAS_SHOWN) fields.push(['  …', `${r.replay.length - DELTAS_SHOWN} more (--json lists them all)`]);
  const stop = r.stop!;
  fields.push(['log walk', `stops at log position ${stop.position}: ${stop.kind === 'end' ? 'end of the log' : 'torn record'} (${stop.reason})`]);
  for (const s of r.stranded) fields.push(['  stranded', `delta ${s.delta} at log position ${s.position}: ${s.blocks} blocks, logged after the stop`]);
  if (r.map !== null) fields.push(...mapRows(r.map));
  fields.push(['result', r.verdict]);
  return renderFields(fields);
}

function mapRows(m: MapReport): [string, string][] {
  const rows: [string, string][] = [];
  const when = m.replayRewrites.length === 0 ? 'as at home' : `as replay leaves it (replay rewrites home ${m.replayRewrites.length === 1 ? 'block' : 'blocks'} ${m.replayRewrites.join(', ')})`;
  if (m.state === 'damaged') {
    rows.push(['block map', `damaged, ${when}: ${m.problem}`]);
    return rows;
  }
  rows.push(['block map', `${m.mapBlocksInUse} of ${m.mapBlocks} map blocks in use, ${when}`]);
  rows.push(['physical blocks', `${m.physicalUsed} used, ${m.physicalFree} free of ${m.physicalBlocks}`]);
  return rows;
}
