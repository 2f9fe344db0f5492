import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { open } from '../src/index';
import { Device } from '../src/io/device';
import { crc32c } from '../src/journal/crc32c';
import { allocBlocks } from '../src/journal/block-memory';
import type { JournalBlock } from '../src/journal/home-area';
import { JournalWriter } from '../src/journal/journal-writer';
import { CLI, buildCli, errorLine, makeFile, makeTempDir, runCli } from './cli-support';
import { attachLoopDevice, loopDeviceUnavailable } from './support/loop-device';

/** The JSON shapes the commands print (only the fields the tests read). */
interface VolumeJson {
  version: number;
  sequence: number;
  volumeId: string;
  blockSize: number;
  blockCount: number;
  dataStart: number;
  logStart: number;
  logBlocks: number;
  logBytes: number;
  deviceSize: number;
  checkpointDelta: number;
  replayPosition: number;
  summaryBlocks?: number;
  mapBlocks?: number;
  mapStart?: number;
  mapEntriesPerBlock?: number;
  physicalBlocks?: number;
  physicalStart?: number;
  reserveBlocks?: number;
  reserveBytes?: number;
}
interface FormatJson extends VolumeJson {
  path: string;
  created: boolean;
}
interface CheckJson {
  consistent: boolean;
  verdict: string;
  volume: VolumeJson | null;
  superblocks: { copy: number; offset: number; state: string; sequence?: number; problem?: string }[];
  replay: { delta: number; position: number; blocks: number; homes: number[]; redirected?: number[] }[];
  stop: { position: number; kind: string; reason: string } | null;
  stranded: { delta: number; position: number; blocks: number }[];
  map: {
    state: string;
    problem?: string;
    replayRewrites: number[];
    summaryBlocks: number;
    mapBlocks: number;
    mapBlocksInUse?: number;
    physicalBlocks: number;
    physicalUsed?: number;
    physicalFree?: number;
  } | null;
}

const B = 4096;
const SIZE = 16 << 20;
const LOG_BLOCKS = 64;
/** The deltas the "crashed" volume holds in its log: home blocks of each. */
const DELTA_HOMES = [[3, 4, 9], [4, 10], [0, 3, 200]];
/**
 * Their log positions by docs/FORMAT.md: a delta of n images takes a
 * one-block descriptor (48 + 12n ≤ 4096), n images and a commit record; an
 * opening starts its history a lap of the ring ahead, at position LOG_BLOCKS.
 */
const DELTA_POSITIONS = [0, 5, 9].map((p) => LOG_BLOCKS + p);
const LOG_END = LOG_BLOCKS + 14;

function json<T>(run: { status: number | null; stdout: string; stderr: string }, status = 0): T {
  assert.equal(run.status, status, `exit ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** XORs one byte of `file` (a bit flip, or more). */
function flip(file: string, offset: number, mask = 0x01): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, offset);
    byte[0] ^= mask;
    fs.writeSync(fd, byte, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

function writeAt(file: string, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Byte offset of log position `position` in a volume formatted here (the log starts at block 2). */
function logByte(position: number): number {
  return (2 + (position % LOG_BLOCKS)) * B;
}

describe('blockfork format and check', function () {
  let temp: { dir: string; remove: () => void };
  let count = 0;
  const next = (): string => path.join(temp.dir, `vol-${count++}.img`);

  before(async function () {
    // The build of the command line compiles the TypeScript: minutes on a busy machine.
    this.timeout(300_000);
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  function format(file: string, ...extra: string[]): FormatJson {
    return json<FormatJson>(runCli(['format', file, '--block-size', String(B), '--log-size', String(LOG_BLOCKS * B), '--json', ...extra]));
  }

  /**
   * A volume that "crashed" right after three commits: formatted by the CLI,
   * three deltas appended to the log through the journal writer, no
   * checkpoint, nothing written home.
   */
  async function crashedVolume(): Promise<string> {
    const file = next();
    format(file, '--size', String(SIZE));
    const device = await Device.open(file);
    const slab = allocBlocks(B, 3);
    try {
      const { journal } = await JournalWriter.open(device);
      for (let i = 0; i < DELTA_HOMES.length; i++) {
        const blocks: JournalBlock[] = DELTA_HOMES[i].map((home, j) => {
          const image = slab.page(j);
          image.fill(0x40 + i * 16 + j);
          return { home, image };
        });
        await journal.appendDelta(i + 1, blocks);
      }
      await journal.close();
    } finally {
      await device.close();
      slab.release();
    }
    return file;
  }

  describe('format', function () {
    it('creates a file with --size, prints the geometry, and check agrees (exit 0)', function () {
      const file = next();
      const made = format(file, '--size', String(SIZE));
      const blocks = SIZE / B;
      assert.equal(made.created, true);
      assert.equal(fs.statSync(file).size, SIZE);
      assert.deepEqual(
        [made.version, made.blockSize, made.logStart, made.logBlocks, made.logBytes, made.dataStart, made.blockCount, made.deviceSize],
        [1, B, 2, LOG_BLOCKS, LOG_BLOCKS * B, 2 + LOG_BLOCKS, blocks - 2 - LOG_BLOCKS, SIZE],
      );
      assert.match(made.volumeId, /^[0-9a-f]{16}$/);

      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.consistent, true);
      assert.equal(checked.verdict, 'consistent: nothing to replay');
      assert.equal(checked.volume!.volumeId, made.volumeId);
      assert.equal(checked.volume!.blockCount, made.blockCount);
      assert.deepEqual(
        checked.superblocks.map((c) => [c.copy, c.offset, c.state, c.sequence]),
        [
          [0, 0, 'in force', 2],
          [1, B, 'valid', 1],
        ],
      );
      assert.deepEqual(checked.replay, []);
      assert.deepEqual(checked.stop, { position: 0, kind: 'end', reason: 'no delta descriptor at log position 0' });
    });

    it('prints block size, data blocks, log size, data start and device size as a table', function () {
      const file = next();
      const run = runCli(['format', file, '--size', '16M', '--block-size', '4K', '--log-size', '256K']);
      assert.equal(run.status, 0, run.stderr);
      const blockCount = SIZE / B - 2 - LOG_BLOCKS;
      assert.match(run.stdout, new RegExp(`^formatted +${file} \\(created\\)$`, 'm'));
      assert.match(run.stdout, /^block size +4096 B$/m);
      assert.match(run.stdout, new RegExp(`^data blocks +${blockCount} \\(15\\.7 MiB\\): volume blocks 0 \\.\\. ${blockCount - 1}$`, 'm'));
      assert.match(run.stdout, /^log +64 blocks \(256 KiB\) from block 2$/m);
      assert.match(run.stdout, /^data start +block 66 \(byte 270336\)$/m);
      assert.match(run.stdout, /^device size +16777216 bytes \(16 MiB\)$/m);
    });

    it('the default log is an eighth of the device', function () {
      const made = json<FormatJson>(runCli(['format', next(), '--size', '16M', '--json']));
      assert.equal(made.blockSize, 4096);
      assert.equal(made.logBlocks, SIZE / 4096 / 8);
    });

    it('refuses an existing volume without --force and leaves it unchanged; with --force formats it anew', function () {
      const file = next();
      const first = format(file, '--size', String(SIZE));
      const before = sha256(file);
      const refused = runCli(['format', file, '--block-size', '512']);
      assert.equal(refused.status, 1);
      assert.equal(refused.stdout, '');
      assert.equal(
        errorLine(refused.stderr),
        `blockfork: refusing to format ${file}: it already holds a blockfork volume (block size ${B}, ${first.blockCount} data blocks, checkpoint delta 0); pass --force to format it anew`,
      );
      assert.equal(sha256(file), before, 'the refused format wrote');

      const again = json<FormatJson>(runCli(['format', file, '--block-size', '512', '--force', '--json']));
      assert.equal(again.created, false);
      assert.equal(again.blockSize, 512);
      assert.notEqual(again.volumeId, first.volumeId);
      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.volume!.volumeId, again.volumeId);
      assert.equal(checked.volume!.blockSize, 512);
    });

    it('refuses a volume whose superblocks are both damaged too, without --force', function () {
      const file = next();
      format(file, '--size', String(SIZE));
      flip(file, 40);
      flip(file, B + 40);
      const before = sha256(file);
      const refused = runCli(['format', file]);
      assert.equal(refused.status, 1);
      assert.match(errorLine(refused.stderr), /refusing to format .*: it already holds a damaged blockfork volume \(.*no valid superblock.*\); pass --force/);
      assert.equal(sha256(file), before);
    });

    it('refuses a file holding an ext4 file system without --force, and leaves it intact', function () {
      const file = makeFile(next(), SIZE);
      const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', file]);
      if (mkfs.error || mkfs.status !== 0) {
        // No mkfs here: the ext2/3/4 magic where mkfs puts it is what the check looks for.
        writeAt(file, 1080, Buffer.from([0x53, 0xef]));
      }
      const before = sha256(file);
      const refused = runCli(['format', file]);
      assert.equal(refused.status, 1);
      assert.equal(
        errorLine(refused.stderr),
        `blockfork: refusing to write on ${file}: it holds a ext2/3/4 signature (0xEF53 at byte 1080); pass --force to overwrite it`,
      );
      assert.equal(sha256(file), before, 'the file system was touched');

      const forced = json<FormatJson>(runCli(['format', file, '--force', '--json']));
      assert.equal(forced.created, false);
      assert.equal(json<CheckJson>(runCli(['check', file, '--json'])).consistent, true);
    });

    it('without --size, a missing PATH is an error; a failed format leaves no file behind', function () {
      const missing = path.join(temp.dir, 'missing.img');
      const run = runCli(['format', missing]);
      assert.equal(run.status, 1);
      assert.equal(errorLine(run.stderr), `blockfork: ${missing} does not exist: pass --size BYTES to create it as a file`);

      const tooSmall = runCli(['format', missing, '--size', '20K']);
      assert.equal(tooSmall.status, 1);
      assert.match(errorLine(tooSmall.stderr), /^blockfork: a device of 20480 bytes has 5 blocks of 4096: too few for 2 superblocks, a log of 8 blocks and any data$/);
      assert.equal(fs.existsSync(missing), false, 'the failed format left its file');
    });

    it('refuses a --size that does not match an existing file', function () {
      const file = makeFile(next(), SIZE);
      const run = runCli(['format', file, '--size', '1M']);
      assert.equal(run.status, 1);
      assert.match(errorLine(run.stderr), /exists with 16777216 bytes, not the --size 1048576: --size only sizes a new file/);
    });
  });

  describe('check', function () {
    it('after a crash before the checkpoint: reports the deltas replay would apply (exit 0)', async function () {
      const file = await crashedVolume();
      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.consistent, true);
      assert.equal(checked.verdict, 'consistent: replay would apply 3 deltas');
      assert.deepEqual(
        checked.replay,
        DELTA_HOMES.map((homes, i) => ({ delta: i + 1, position: DELTA_POSITIONS[i], blocks: homes.length, homes })),
      );
      assert.deepEqual(checked.stop, { position: LOG_END, kind: 'end', reason: `no delta descriptor at log position ${LOG_END}` });
      assert.deepEqual(checked.stranded, []);

      const text = runCli(['check', file]);
      assert.equal(text.status, 0, text.stderr);
      assert.equal(text.stderr, '');
      assert.match(text.stdout, /^replay +would apply 3 deltas$/m);
      assert.match(text.stdout, new RegExp(`^ +delta 2 +log position ${DELTA_POSITIONS[1]}: 2 blocks \\(home 4, 10\\)$`, 'm'));
      assert.match(text.stdout, new RegExp(`^log walk +stops at log position ${LOG_END}: end of the log`, 'm'));
      assert.match(text.stdout, /^result +consistent: replay would apply 3 deltas$/m);
    });

    for (const damaged of [0, 1] as const) {
      it(`a bit flipped in superblock copy ${damaged}: names the damaged copy, the other is in force (exit 0)`, async function () {
        const file = await crashedVolume();
        flip(file, damaged * B + 72); // inside blockCount: only the checksum can tell
        const checked = json<CheckJson>(runCli(['check', file, '--json']));
        assert.equal(checked.consistent, true);
        const copy = checked.superblocks[damaged];
        const other = checked.superblocks[1 - damaged];
        assert.equal(copy.state, 'damaged');
        assert.match(copy.problem!, /^checksum mismatch \(stored crc32c 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\): torn or damaged$/);
        assert.equal(other.state, 'in force');
        assert.equal(checked.replay.length, 3);
        assert.equal(checked.verdict, `consistent: replay would apply 3 deltas; superblock copy ${damaged} is damaged (the next checkpoint rewrites it)`);

        const text = runCli(['check', file]);
        assert.equal(text.status, 0, text.stderr);
        assert.match(text.stdout, new RegExp(`^superblock ${damaged} +byte ${damaged * B}: damaged: checksum mismatch`, 'm'));
      });
    }

    it('a bit flipped in an image of the last delta: the walk stops at that delta, with the checksum fault (exit 0)', async function () {
      const file = await crashedVolume();
      flip(file, logByte(DELTA_POSITIONS[2] + 1 + 1) + 17, 0x10); // image 1 (home 3) of delta 3
      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.consistent, true);
      assert.deepEqual(
        checked.replay.map((d) => d.delta),
        [1, 2],
      );
      assert.deepEqual(checked.stop, {
        position: DELTA_POSITIONS[2],
        kind: 'torn',
        reason: `image 1 (home block 3) of delta 3 at log position ${DELTA_POSITIONS[2] + 2} fails its checksum`,
      });
      assert.match(checked.verdict, /^consistent: replay would apply 2 deltas; the log ends in a torn delta/);

      const text = runCli(['check', file]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(
        text.stdout,
        new RegExp(`^log walk +stops at log position ${DELTA_POSITIONS[2]}: torn record \\(image 1 \\(home block 3\\) of delta 3 at log position ${DELTA_POSITIONS[2] + 2} fails its checksum\\)$`, 'm'),
      );
    });

    it('a corrupt record in the middle of the log, with committed deltas after it: exit 1, naming what replay would drop', async function () {
      const file = await crashedVolume();
      flip(file, logByte(DELTA_POSITIONS[0] + 1) + 100); // image 0 of delta 1
      const run = runCli(['check', file, '--json']);
      const checked = json<CheckJson>(run, 1);
      assert.equal(checked.consistent, false);
      assert.deepEqual(checked.replay, []);
      assert.equal(checked.stop!.kind, 'torn');
      const [p1, p2, p3] = DELTA_POSITIONS;
      assert.deepEqual(checked.stranded, [
        { delta: 2, position: p2, blocks: 2 },
        { delta: 3, position: p3, blocks: 3 },
      ]);
      assert.equal(
        errorLine(run.stderr),
        `blockfork: damaged beyond what replay handles: the log walk stops at position ${p1} (image 0 (home block 3) of delta 1 at log position ${p1 + 1} fails its checksum), ` +
          `yet deltas were logged after it (delta 2 at log position ${p2}, delta 3 at log position ${p3}): the damaged delta had been committed, ` +
          'and replay would drop it and every delta after it',
      );
    });

    it('garbage in both superblocks: exit 1, naming each copy and its fault', async function () {
      const file = await crashedVolume();
      // The magic is kept: this is a damaged volume, not some other data.
      writeAt(file, 16, randomBytes(108));
      writeAt(file, B + 16, randomBytes(108));
      const run = runCli(['check', file]);
      assert.equal(run.status, 1);
      assert.equal(run.stdout, '');
      const line = errorLine(run.stderr);
      assert.match(line, new RegExp(`^blockfork: damaged beyond what replay handles: '${file}': no valid superblock \\(`));
      assert.match(line, /copy 0 \(byte 0\): checksum mismatch \(stored crc32c 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\): torn or damaged/);
      assert.match(line, /copy 1 \(byte \d+\): /);

      const asJson = json<CheckJson>(runCli(['check', file, '--json']), 1);
      assert.equal(asJson.consistent, false);
      assert.equal(asJson.volume, null);
      assert.match(asJson.verdict, /no valid superblock/);
    });

    it('a file that is not a volume: exit 1, "not a blockfork volume"', function () {
      for (const contents of [Buffer.alloc(1 << 20), randomBytes(1 << 20)]) {
        const file = next();
        fs.writeFileSync(file, contents);
        const run = runCli(['check', file]);
        assert.equal(run.status, 1);
        assert.equal(run.stdout, '');
        assert.equal(errorLine(run.stderr), `blockfork: ${file}: not a blockfork volume: no superblock magic ("blkfork") in copy 0 (byte 0) or copy 1`);
      }
    });

    it('never writes: bytes and mtime unchanged, and the file is opened O_RDONLY', async function () {
      const file = await crashedVolume();
      flip(file, logByte(DELTA_POSITIONS[2] + 1) + 5); // a torn tail: check must not "repair" it
      flip(file, 40); // and a damaged superblock copy: nor rewrite it
      const past = new Date(Date.now() - 3_600_000);
      fs.utimesSync(file, past, past);
      const before = { hash: sha256(file), mtime: fs.statSync(file).mtimeMs };
      for (const args of [['check', file], ['check', file, '--json']]) assert.equal(runCli(args).status, 0);
      assert.equal(sha256(file), before.hash);
      assert.equal(fs.statSync(file).mtimeMs, before.mtime);

      const trace = path.join(temp.dir, 'check.strace');
      const strace = spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat,open', '-o', trace, process.execPath, CLI, 'check', file], { encoding: 'utf8' });
      if (strace.error || !fs.existsSync(trace)) {
        console.log(`      strace part skipped: ${strace.error?.message ?? strace.stderr.trim()}`);
        return;
      }
      assert.equal(strace.status, 0, strace.stderr);
      const opens = fs.readFileSync(trace, 'utf8').split('\n').filter((line) => line.includes(`"${file}"`));
      assert.ok(opens.length > 0, 'strace saw no open of the volume');
      for (const line of opens) assert.match(line, /O_RDONLY/, line);
      for (const line of opens) assert.doesNotMatch(line, /O_RDWR|O_WRONLY|O_CREAT|O_TRUNC/, line);
    });
  });

  describe('info', function () {
    it('shows the superblock of a volume, in --json and in the table', async function () {
      const file = await crashedVolume();
      const made = json<CheckJson>(runCli(['check', file, '--json'])).volume!;
      const report = json<{ volume: { formatted: boolean; superblockCopy: number } & VolumeJson; signature: unknown }>(runCli(['info', file, '--json']));
      assert.equal(report.volume.formatted, true);
      assert.equal(report.volume.superblockCopy, 0);
      assert.deepEqual(
        [report.volume.version, report.volume.blockSize, report.volume.blockCount, report.volume.logBlocks, report.volume.logBytes, report.volume.checkpointDelta],
        [1, B, made.blockCount, LOG_BLOCKS, LOG_BLOCKS * B, 0],
      );
      assert.equal(report.volume.volumeId, made.volumeId);
      assert.equal(report.signature, null);

      const text = runCli(['info', file]);
      assert.equal(text.status, 0, text.stderr);
      // format writes sequences 1 and 2 (both copies), the opening that logged the deltas 3 and 4.
      assert.match(text.stdout, /^blockfork volume +yes \(superblock copy 0 in force, sequence 4\)$/m);
      assert.match(text.stdout, /^ +format version +1$/m);
      assert.match(text.stdout, /^ +block size +4096 B$/m);
      assert.match(text.stdout, new RegExp(`^ +data blocks +${made.blockCount} `, 'm'));
      assert.match(text.stdout, /^ +log +64 blocks \(256 KiB\) from block 2$/m);
      assert.match(text.stdout, /^ +checkpoint +none yet \(delta 0\)$/m);
    });

    it('says when no volume is there, or a damaged one', function () {
      const plain = makeFile(next(), SIZE);
      assert.deepEqual(json<{ volume: unknown }>(runCli(['info', plain, '--json'])).volume, { formatted: false });
      const text = runCli(['info', plain]);
      assert.match(text.stdout, /^blockfork volume +no$/m);

      const damaged = next();
      format(damaged, '--size', String(SIZE));
      flip(damaged, 40);
      flip(damaged, B + 40);
      const report = json<{ volume: { formatted: boolean; problem: string } }>(runCli(['info', damaged, '--json']));
      assert.equal(report.volume.formatted, false);
      assert.match(report.volume.problem, /no valid superblock \(copy 0 \(byte 0\): checksum mismatch/);
    });
  });

  it('on a loop device: format, check and info', function () {
    const reason = loopDeviceUnavailable();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const loop = attachLoopDevice(makeFile(next(), 32 << 20));
    try {
      const made = json<FormatJson>(runCli(['format', loop.path, '--json']));
      assert.equal(made.created, false);
      assert.equal(made.deviceSize, 32 << 20);
      assert.equal(made.blockCount, (32 << 20) / 4096 - 2 - made.logBlocks);
      const checked = json<CheckJson>(runCli(['check', loop.path, '--json']));
      assert.equal(checked.consistent, true);
      assert.equal(checked.volume!.volumeId, made.volumeId);
      const info = json<{ type: string; volume: { formatted: boolean; volumeId: string } }>(runCli(['info', loop.path, '--json']));
      assert.equal(info.type, 'block device');
      assert.equal(info.volume.formatted, true);
      assert.equal(info.volume.volumeId, made.volumeId);
      const refused = runCli(['format', loop.path]);
      assert.equal(refused.status, 1);
      assert.match(errorLine(refused.stderr), new RegExp(`^blockfork: refusing to format ${loop.path}: it already holds a blockfork volume`));
    } finally {
      loop.detach();
    }
  });

  describe('version 2', function () {
    const RESERVE_BLOCKS = 128;
    /** A run long enough to be redirected (redirectMin below), inside map block 0. */
    const RUN = Array.from({ length: 8 }, (_, i) => 300 + i);

    function formatV2(file: string): FormatJson {
      return format(file, '--size', String(SIZE), '--format-version', '2', '--reserve', String(RESERVE_BLOCKS * B));
    }

    /** Writes RUN in one delta (redirected) and one scattered block; leaves the volume open for the caller to close or copy. */
    async function writeRun(file: string) {
      const vol = await open(file, { journal: true, blockSize: B, redirectMin: 4 * B });
      await vol.change(async (tx) => {
        for (const b of [...RUN, 5]) (await tx.write(b)).fill(b & 0xff);
      });
      await vol.commit();
      return vol;
    }

    it('format --format-version 2 --reserve: the layout in --json, info and check report it, the map is empty', function () {
      const file = next();
      const made = formatV2(file);
      // docs/FORMAT.md, "Layout of version 2": the fixed point of planLayout.
      const E = (B - 16) / 4;
      const home = SIZE / B - 2 - LOG_BLOCKS;
      let n = home - RESERVE_BLOCKS;
      for (;;) {
        const fits = home - RESERVE_BLOCKS - Math.ceil(n / E) - 1;
        if (fits >= n) break;
        n = fits;
      }
      const mapBlocks = Math.ceil(n / E);
      assert.deepEqual(
        [made.version, made.blockCount, made.dataStart, made.summaryBlocks, made.mapBlocks, made.mapStart, made.mapEntriesPerBlock],
        [2, n, 2 + LOG_BLOCKS, 1, mapBlocks, 2 + LOG_BLOCKS + 1, E],
      );
      assert.deepEqual(
        [made.physicalBlocks, made.physicalStart, made.reserveBlocks, made.reserveBytes],
        [n + RESERVE_BLOCKS, 2 + LOG_BLOCKS + 1 + mapBlocks, RESERVE_BLOCKS, RESERVE_BLOCKS * B],
      );

      const info = json<{ volume: VolumeJson & { formatted: boolean } }>(runCli(['info', file, '--json'])).volume;
      assert.equal(info.formatted, true);
      for (const key of ['version', 'blockCount', 'summaryBlocks', 'mapBlocks', 'physicalBlocks', 'physicalStart', 'reserveBlocks'] as const) {
        assert.equal(info[key], made[key], `info's ${key}`);
      }
      const text = runCli(['info', file]);
      assert.equal(text.status, 0, text.stderr);
      assert.match(text.stdout, /^ +format version +2$/m);
      assert.match(text.stdout, new RegExp(`^ +block map +${mapBlocks} blocks from block ${made.mapStart} \\(${E} volume blocks each\\)$`, 'm'));
      assert.match(text.stdout, new RegExp(`^ +physical area +${n + RESERVE_BLOCKS} blocks .* from block ${made.physicalStart}: `, 'm'));
      assert.match(text.stdout, /^ +reserve +128 blocks \(512 KiB\)$/m);

      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.consistent, true);
      assert.equal(checked.volume!.physicalBlocks, made.physicalBlocks);
      assert.deepEqual(checked.map, {
        state: 'ok',
        replayRewrites: [],
        summaryBlocks: 1,
        mapBlocks,
        mapBlocksInUse: 0,
        physicalBlocks: n + RESERVE_BLOCKS,
        physicalUsed: n,
        physicalFree: RESERVE_BLOCKS,
      });
      const table = runCli(['check', file]);
      assert.match(table.stdout, new RegExp(`^block map +0 of ${mapBlocks} map blocks in use, as at home$`, 'm'));
      assert.match(table.stdout, new RegExp(`^physical blocks +${n} used, ${RESERVE_BLOCKS} free of ${n + RESERVE_BLOCKS}$`, 'm'));
    });

    it('version 1 stays the default: no version 2 fields, no map in check', function () {
      const file = next();
      const made = format(file, '--size', String(SIZE));
      assert.equal(made.version, 1);
      assert.equal(made.physicalBlocks, undefined);
      assert.equal(made.summaryBlocks, undefined);
      assert.equal(json<CheckJson>(runCli(['check', file, '--json'])).map, null);
    });

    it('after a delta that redirects a run: one map block in use, every volume block one physical block (exit 0)', async function () {
      const file = next();
      const made = formatV2(file);
      await (await writeRun(file)).close();
      const checked = json<CheckJson>(runCli(['check', file, '--json']));
      assert.equal(checked.consistent, true, checked.verdict);
      assert.equal(checked.map!.state, 'ok');
      assert.equal(checked.map!.mapBlocksInUse, 1);
      // The old copies of the run were freed by the checkpoint at close.
      assert.equal(checked.map!.physicalUsed, made.blockCount);
      assert.equal(checked.map!.physicalFree, RESERVE_BLOCKS);
    });

    it('a bit flipped in a map block the summary flags: exit 1, naming the map block', async function () {
      const file = next();
      const made = formatV2(file);
      await (await writeRun(file)).close();
      flip(file, made.mapStart! * B + 16 + 4 * 700); // an identity entry of map block 0: only the checksum can tell
      const run = runCli(['check', file, '--json']);
      const checked = json<CheckJson>(run, 1);
      assert.equal(checked.consistent, false);
      assert.equal(checked.map!.state, 'damaged');
      assert.match(checked.map!.problem!, /^the block map is damaged: map block 0 \(home block 1\): checksum mismatch/);
      assert.match(errorLine(run.stderr), /^blockfork: damaged beyond what replay handles: the block map is damaged: map block 0 \(home block 1\): checksum mismatch/);

      const text = runCli(['check', file]);
      assert.equal(text.status, 1);
      assert.match(text.stdout, /^block map +damaged, as at home: the block map is damaged: map block 0 /m);
    });

    it('a physical block referenced twice (a map block rewritten with a valid checksum): exit 1, naming the block', async function () {
      const file = next();
      const made = formatV2(file);
      await (await writeRun(file)).close();
      const at = made.mapStart! * B;
      const mapBlock = fs.readFileSync(file).subarray(at, at + B);
      const entry = mapBlock.readUInt32LE(16 + 4 * RUN[0]);
      assert.notEqual(entry, 0, 'the run was redirected');
      mapBlock.writeUInt32LE(entry, 16 + 4 * 10); // volume block 10 now claims the same physical block as block 300
      mapBlock.writeUInt32LE(crc32c(mapBlock.subarray(8)), 4);
      writeAt(file, at, mapBlock);
      const run = runCli(['check', file, '--json']);
      const checked = json<CheckJson>(run, 1);
      assert.equal(checked.map!.state, 'damaged');
      assert.match(checked.map!.problem!, new RegExp(`physical block ${entry - 1} is referenced by logical 10 and logical 300`));
      assert.match(errorLine(run.stderr), /^blockfork: damaged beyond what replay handles: .*block map/);
    });

    it('a map block torn at home while its delta is still in the log: replay rewrites it, so check is consistent (exit 0)', async function () {
      const file = next();
      const made = formatV2(file);
      const vol = await writeRun(file);
      // A copy taken with the delta committed and not checkpointed: the image a crash leaves.
      const crashed = next();
      fs.copyFileSync(file, crashed);
      await vol.close();
      // Home holds the summary block flagging map block 0 (as written home before the crash), and map block 0 torn:
      // without the log, check would call the map damaged.
      const metadata = fs.readFileSync(file).subarray(made.dataStart * B, made.physicalStart! * B);
      writeAt(crashed, made.dataStart * B, metadata);
      flip(crashed, made.mapStart! * B + 16 + 4 * 700);
      const checked = json<CheckJson>(runCli(['check', crashed, '--json']));
      assert.equal(checked.consistent, true, checked.verdict);
      assert.equal(checked.replay.length, 1);
      assert.equal(checked.replay[0].redirected!.length, RUN.length);
      assert.deepEqual(checked.map!.replayRewrites, [0, 1], 'the summary block and map block 0 are logged');
      assert.equal(checked.map!.state, 'ok');
      assert.equal(checked.map!.mapBlocksInUse, 1);
      // Before a checkpoint the old copies of the run are still referenced by nothing, and free at open.
      assert.equal(checked.map!.physicalUsed, made.blockCount);
      const text = runCli(['check', crashed]);
      assert.match(text.stdout, /^block map +1 of \d+ map blocks in use, as replay leaves it \(replay rewrites home blocks 0, 1\)$/m);
      assert.match(text.stdout, /^ +delta \d+ +log position \d+: 3 blocks \(home 0, 1, \d+\), 8 redirected$/m);
    });
  });

  describe('usage', function () {
    for (const command of ['format', 'check']) {
      it(`${command} --help exits 0`, function () {
        const run = runCli([command, '--help']);
        assert.equal(run.status, 0, run.stderr);
        assert.match(run.stdout, new RegExp(`^Usage: blockfork ${command} \\[options\\] <path>`));
      });
    }

    it('check --help documents the exit status of a corrupt record in the middle of the log', function () {
      const run = runCli(['check', '--help']);
      assert.match(run.stdout, /Exit status:\n +0 +consistent/);
      assert.match(run.stdout, /1 +not a blockfork volume; no valid superblock; the volume does not fit the\n +device; or a corrupt record in the middle of the log/);
      assert.match(run.stdout, /in a volume of version 2,\n +a corrupt block map/);
    });

    const usage: [string, string[], RegExp][] = [
      ['format without PATH', ['format'], /missing required argument 'path'/],
      ['check without PATH', ['check'], /missing required argument 'path'/],
      ['check with two paths', ['check', 'a', 'b'], /too many arguments/],
      ['an unknown option', ['check', 'a', '--bogus'], /unknown option '--bogus'/],
      ['a block size that is not a power of two', ['format', 'a', '--block-size', '1000'], /'--block-size <bytes>' argument '1000' is invalid/],
      ['a block size above 64 KiB', ['format', 'a', '--block-size', '128K'], /'--block-size <bytes>' argument '128K' is invalid/],
      ['a --size that is not a size', ['format', 'a', '--size', 'big'], /'--size <bytes>' argument 'big' is invalid/],
      ['a log that is not whole blocks', ['format', 'a', '--log-size', '5000'], /--log-size 5000 is not a whole number of 4096-byte blocks/],
      ['a log of too few blocks', ['format', 'a', '--log-size', '16K'], /--log-size 16384 is 4 blocks of 4096; the log needs at least 8/],
      ['a format version that does not exist', ['format', 'a', '--format-version', '3'], /'--format-version <1\|2>' argument '3' is invalid\. expected 1 or 2/],
      ['a reserve without version 2', ['format', 'a', '--reserve', '1M'], /--reserve goes with --format-version 2 \(version 1 has no reserve\)/],
      ['a reserve that is not whole blocks', ['format', 'a', '--format-version', '2', '--reserve', '5000'], /--reserve 5000 is not a whole number of 4096-byte blocks/],
      ['a reserve that is not a size', ['format', 'a', '--format-version', '2', '--reserve', 'lots'], /'--reserve <bytes>' argument 'lots' is invalid/],
    ];
    for (const [what, args, message] of usage) {
      it(`${what}: exit 2`, function () {
        const run = runCli(args);
        assert.equal(run.status, 2, run.stderr);
        assert.match(run.stderr, message);
        assert.equal(fs.existsSync('a'), false);
      });
    }
  });
});
