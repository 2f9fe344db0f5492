import { Command } from 'commander';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { inspectJournal, type JournalReport } from '../journal/replay';
import type { SuperblockCopy } from '../journal/superblock';
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
     delta after it: data loss, not a crash. Also any I/O error.
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
}

export function checkCommand(): Command {
  return new Command('check')
    .description(
      'Check a blockfork volume without writing to it: both superblock copies (which is in force, which is damaged and why), ' +
        'the deltas that replay would apply from the checkpoint, and where and why the log walk stops.',
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
  const replay = journal.deltas.map((d) => ({ delta: d.delta, position: d.position, blocks: d.homes.length, homes: [...d.homes] }));
  return {
    path: io.path,
    consistent: stranded.length === 0,
    verdict: verdict(replay, stop, superblocks, stranded),
    volume: volumeFields(sb),
    superblocks,
    replay,
    stop: { position: stop.position, kind: stop.kind, reason: stop.reason },
    stranded,
  };
}

function unusable(path: string, verdict: string): CheckReport {
  return { path, consistent: false, verdict, volume: null, superblocks: [], replay: [], stop: null, stranded: [] };
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

function verdict(replay: DeltaReport[], stop: { position: number; kind: string; reason: string }, copies: CopyReport[], stranded: StrandedDelta[]): string {
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
    fields.push([`  delta ${d.delta}`, `log position ${d.position}: ${d.blocks} ${d.blocks === 1 ? 'block' : 'blocks'}${d.blocks > 0 ? ` (home ${homes})` : ''}`]);
  }
  if (r.replay.length > DELTAS_SHOWN) fields.push(['  …', `${r.replay.length - DELTAS_SHOWN} more (--json lists them all)`]);
  const stop = r.stop!;
  fields.push(['log walk', `stops at log position ${stop.position}: ${stop.kind === 'end' ? 'end of the log' : 'torn record'} (${stop.reason})`]);
  for (const s of r.stranded) fields.push(['  stranded', `delta ${s.delta} at log position ${s.position}: ${s.blocks} blocks, logged after the stop`]);
  fields.push(['result', r.verdict]);
  return renderFields(fields);
}
