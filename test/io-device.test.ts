import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../src/native';
import { Device, DEFAULT_QUEUE_DEPTH } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';

/**
 * Device.open on regular files: geometry, sparse creation, O_DIRECT on and
 * off (and a file system that refuses it), read-only handles, the exclusive
 * lock between handles and between processes, Node-style open errors, and
 * the life of a handle through close.
 */

const root = path.resolve(__dirname, '..');
const PAGE = 4096;
const O_DIRECT = fs.constants.O_DIRECT;

/** The open flags of this process's descriptors on `file`, from /proc/self/fdinfo. */
function openFlagsOf(file: string): number[] {
  const flags: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== file) continue;
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const match = /^flags:\s*([0-7]+)$/m.exec(info);
    if (match) flags.push(parseInt(match[1], 8));
  }
  return flags;
}

/** The logical block size of the block device under `file`'s file system, from sysfs; undefined if none. */
function logicalBlockSizeUnder(file: string): number | undefined {
  const dev = fs.statSync(file).dev;
  const major = (dev >>> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  for (const queue of [`/sys/dev/block/${major}:${minor}/queue`, `/sys/dev/block/${major}:${minor}/../queue`]) {
    try {
      return Number(fs.readFileSync(path.join(queue, 'logical_block_size'), 'utf8'));
    } catch {
      // A partition keeps its queue in its parent; an anonymous device has none.
    }
  }
  return undefined;
}

/** Runs `script` (JavaScript, with `Device` in scope) in a child node process; returns its stdout. */
function inChild(script: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const prelude = `const { Device } = require(${JSON.stringify(path.join(root, 'src/io/device.ts'))});`;
  const child = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', prelude + script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

describe('Device on regular files', () => {
  let scratch: ScratchDir;
  let slab: Slab;
  const open: Device[] = [];

  async function openDevice(file: string, options?: Parameters<typeof Device.open>[1]): Promise<Device> {
    const device = await Device.open(file, options);
    open.push(device);
    return device;
  }

  before(() => {
    scratch = makeScratchDir('device');
    slab = Slab.alloc(PAGE, 16);
  });
  afterEach(async () => {
    for (const device of open.splice(0)) await device.close();
  });
  after(() => {
    slab.release();
    scratch.remove();
  });

  describe('geometry', () => {
    it('creates a missing file sparse at the given size, and reports its geometry', async () => {
      const file = scratch.file('sparse.img');
      const size = 1 << 30;
      const device = await openDevice(file, { size });
      assert.equal(device.created, true);
      const st = fs.statSync(file);
      assert.equal(st.size, size);
      assert.ok(st.blocks * 512 < 1 << 20, `a sparse file allocates almost nothing, yet ${st.blocks} blocks are allocated`);

      const g = device.geometry;
      assert.equal(g.isBlockDevice, false);
      assert.equal(g.size, size);
      assert.equal(g.direct, true);
      assert.equal(g.readOnly, false);
      assert.ok(Object.isFrozen(g));
      // STATX_DIOALIGN on a file system over a block device is that device's logical block size.
      const expected = logicalBlockSizeUnder(file);
      if (expected !== undefined) assert.equal(g.logicalSectorSize, expected);
      else assert.ok(g.logicalSectorSize >= 512 && g.logicalSectorSize <= st.blksize);
      assert.equal(g.logicalSectorSize & (g.logicalSectorSize - 1), 0, 'a power of two');
      assert.ok(g.physicalSectorSize >= g.logicalSectorSize);
      assert.ok(g.memoryAlignment >= 1 && g.memoryAlignment <= g.logicalSectorSize);
      assert.equal(device.queueDepth, DEFAULT_QUEUE_DEPTH);
      assert.equal(device.engine, native.probeIoUring() === 0 ? 'io_uring' : 'threads');
    });

    it('reports a logical sector size that the kernel accepts for O_DIRECT at that granularity', async () => {
      const file = scratch.file('granularity.img');
      const device = await openDevice(file, { size: 64 * PAGE });
      const unit = device.geometry.logicalSectorSize;
      const page = slab.page(0);
      page.fill(0x5a);
      await device.run([{ op: 'write', offset: unit, buffers: [page.subarray(0, unit)] }]);
      // The kernel itself, through plain fs with O_DIRECT, takes that offset and length.
      const fd = fs.openSync(file, fs.constants.O_RDONLY | O_DIRECT);
      try {
        const into = slab.page(1);
        assert.equal(fs.readSync(fd, into, 0, unit, unit), unit);
        assert.ok(into.subarray(0, unit).every((b) => b === 0x5a));
      } finally {
        fs.closeSync(fd);
      }
    });

    it('opens an existing file at its own size, ignoring `size`, and rounds a ragged tail down to a sector', async () => {
      const file = scratch.file('existing.img');
      fs.writeFileSync(file, Buffer.alloc(10_000, 1));
      const device = await openDevice(file, { size: 1 << 20 });
      assert.equal(device.created, false);
      const unit = device.geometry.logicalSectorSize;
      assert.equal(device.geometry.size, Math.floor(10_000 / unit) * unit);
      assert.equal(fs.statSync(file).size, 10_000, 'an existing file is not resized');
    });

    it('opens with O_DIRECT by default and without it when `direct: false`, and says which', async () => {
      const direct = scratch.file('direct.img');
      const buffered = scratch.file('buffered.img');
      const a = await openDevice(direct, { size: 16 * PAGE });
      const b = await openDevice(buffered, { size: 16 * PAGE, direct: false });
      assert.equal(a.geometry.direct, true);
      assert.equal(b.geometry.direct, false);
      const aFlags = openFlagsOf(direct);
      const bFlags = openFlagsOf(buffered);
      assert.equal(aFlags.length, 1);
      assert.equal(bFlags.length, 1);
      assert.notEqual(aFlags[0] & O_DIRECT, 0, 'the default handle has O_DIRECT');
      assert.equal(bFlags[0] & O_DIRECT, 0, 'the direct: false handle has no O_DIRECT');
      const page = slab.page(0);
      page.fill(9);
      await b.run([{ op: 'write', offset: PAGE, buffers: [page] }]);
      await b.flush();
      assert.ok(fs.readFileSync(buffered).subarray(PAGE, 2 * PAGE).every((x) => x === 9));
    });
  });

  describe('a file system that refuses O_DIRECT (ramfs)', () => {
    let mountPoint: string | undefined;

    before(function () {
      const dir = scratch.file('ramfs');
      fs.mkdirSync(dir);
      try {
        execFileSync('mount', ['-t', 'ramfs', 'ramfs', dir], { stdio: 'pipe' });
        mountPoint = dir;
      } catch (error) {
        console.log(`      skipped: cannot mount a ramfs here (${(error as Error).message.split('\n')[0]})`);
        this.skip();
      }
    });
    after(async () => {
      for (const device of open.splice(0)) await device.close();
      if (mountPoint) execFileSync('umount', [mountPoint], { stdio: 'pipe' });
    });

    it('refuses the open with EINVAL naming O_DIRECT and `direct: false`, leaving no file behind', async () => {
      const file = path.join(mountPoint!, 'refused.img');
      await assert.rejects(Device.open(file, { size: 16 * PAGE }), (error: NodeJS.ErrnoException) => {
        assert.equal(error.code, 'EINVAL');
        assert.equal(error.errno, -22);
        assert.equal(error.syscall, 'open');
        assert.equal(error.path, file);
        assert.equal(
          error.message,
          `EINVAL: invalid argument, open '${file}' (the file system refuses O_DIRECT; open with { direct: false } to use buffered I/O)`,
        );
        return true;
      });
      assert.equal(fs.existsSync(file), false, 'the failed open removed the file it created');
    });

    it('refuses O_DIRECT on an existing file there too, and leaves that file alone', async () => {
      const file = path.join(mountPoint!, 'existing.img');
      fs.writeFileSync(file, Buffer.alloc(4 * PAGE, 3));
      await assert.rejects(Device.open(file), { code: 'EINVAL', syscall: 'open', path: file });
      assert.deepEqual(fs.readFileSync(file), Buffer.alloc(4 * PAGE, 3));
    });

    it('opens with `direct: false` and round-trips data there', async () => {
      const file = path.join(mountPoint!, 'buffered.img');
      const device = await openDevice(file, { size: 16 * PAGE, direct: false });
      assert.equal(device.geometry.direct, false);
      const page = slab.page(0);
      page.fill(0x77);
      await device.run([{ op: 'write', offset: 2 * PAGE, buffers: [page] }]);
      const back = slab.page(1);
      await device.run([{ op: 'read', offset: 2 * PAGE, buffers: [back] }]);
      assert.ok(back.every((x) => x === 0x77));
      assert.ok(fs.readFileSync(file).subarray(2 * PAGE, 3 * PAGE).every((x) => x === 0x77));
    });
  });

  describe('read-only handles', () => {
    it('reads, and refuses writes and flush with a clear error', async () => {
      const file = scratch.file('read-only.img');
      fs.writeFileSync(file, Buffer.alloc(8 * PAGE, 0x42));
      const device = await openDevice(file, { readOnly: true });
      assert.equal(device.geometry.readOnly, true);
      const page = slab.page(0);
      await device.run([{ op: 'read', offset: PAGE, buffers: [page] }]);
      assert.ok(page.every((x) => x === 0x42));
      await assert.rejects(device.submit([{ op: 'write', offset: 0, buffers: [page] }]), {
        code: 'ERR_READ_ONLY',
        message: 'request 0: the device is open read-only',
      });
      await assert.rejects(device.flush(), { code: 'ERR_READ_ONLY', message: `device '${file}' is open read-only` });
      assert.ok(fs.readFileSync(file).every((x) => x === 0x42), 'nothing was written');
    });

    it('does not create a missing file, even with `size`', async () => {
      const file = scratch.file('read-only-missing.img');
      await assert.rejects(Device.open(file, { readOnly: true, size: 16 * PAGE }), { code: 'ENOENT', syscall: 'open' });
      assert.equal(fs.existsSync(file), false);
    });
  });

  describe('one writer per volume (flock)', () => {
    const lockMessage = (file: string, timeout = 0) =>
      `EAGAIN: resource temporarily unavailable, flock '${file}' (another open handle held its lock for the ${timeout} ms of lockTimeout: one writer per volume)`;
    const noWait = { lockTimeout: 0 };

    it('refuses a second writable open in the same process, and allows it after close', async () => {
      const file = scratch.file('locked.img');
      const first = await Device.open(file, { size: 16 * PAGE });
      try {
        await assert.rejects(Device.open(file, noWait), (error: NodeJS.ErrnoException) => {
          assert.ok(error.code === 'EAGAIN' || error.code === 'EWOULDBLOCK');
          assert.equal(error.errno, -11);
          assert.equal(error.syscall, 'flock');
          assert.equal(error.path, file);
          assert.equal(error.message, lockMessage(file));
          return true;
        });
        await assert.rejects(Device.open(file, { readOnly: true, ...noWait }), { code: 'EAGAIN', syscall: 'flock' });
      } finally {
        await first.close();
      }
      const second = await openDevice(file);
      assert.equal(second.closed, false);
    });

    it('lets readers share, and keeps a writer out while a reader holds the volume', async () => {
      const file = scratch.file('shared.img');
      fs.writeFileSync(file, Buffer.alloc(4 * PAGE));
      const r1 = await openDevice(file, { readOnly: true });
      const r2 = await openDevice(file, { readOnly: true });
      await assert.rejects(Device.open(file, noWait), { code: 'EAGAIN', syscall: 'flock' });
      await r1.close();
      await r2.close();
      await openDevice(file);
    });

    it('refuses a writable open from another process while this one holds the volume', async () => {
      const file = scratch.file('cross-process.img');
      const held = await Device.open(file, { size: 16 * PAGE });
      const attempt = `
        Device.open(${JSON.stringify(file)}, { lockTimeout: 0 }).then(
          async (d) => { await d.close(); console.log(JSON.stringify({ opened: true })); },
          (e) => console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall, path: e.path, message: e.message })),
        );`;
      try {
        const refused = inChild(attempt);
        assert.equal(refused.status, 0, refused.stderr);
        assert.deepEqual(JSON.parse(refused.stdout), { code: 'EAGAIN', errno: -11, syscall: 'flock', path: file, message: lockMessage(file) });
      } finally {
        await held.close();
      }
      const allowed = inChild(attempt);
      assert.equal(allowed.status, 0, allowed.stderr);
      assert.deepEqual(JSON.parse(allowed.stdout), { opened: true });
    });

    it('waits for a lock that is let go within lockTimeout (default 5000 ms), as a restart right after a kill needs', async () => {
      const file = scratch.file('waited.img');
      const held = await Device.open(file, { size: 16 * PAGE });
      // The first attempt runs before Device.open returns, while the lock is held: the open must wait for the close.
      const writer = Device.open(file);
      await held.close();
      const opened = await writer;
      // A reader waits for the writer likewise.
      const reader = Device.open(file, { readOnly: true });
      await opened.close();
      await (await reader).close();
    });

    it('gives up after lockTimeout with EAGAIN, naming the wait', async () => {
      const file = scratch.file('held.img');
      const held = await Device.open(file, { size: 16 * PAGE });
      try {
        await assert.rejects(Device.open(file, { lockTimeout: 30 }), { code: 'EAGAIN', errno: -11, syscall: 'flock', path: file, message: lockMessage(file, 30) });
      } finally {
        await held.close();
      }
    });

    it('checks lockTimeout before opening anything', async () => {
      const file = scratch.file('never.img');
      for (const bad of ['5', null, true, {}]) {
        await assert.rejects(Device.open(file, { size: 16 * PAGE, lockTimeout: bad as never }), {
          name: 'TypeError',
          message: /^lockTimeout must be a number of milliseconds, got /,
        });
      }
      for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 31]) {
        await assert.rejects(Device.open(file, { size: 16 * PAGE, lockTimeout: bad }), {
          name: 'RangeError',
          message: /^lockTimeout must be an integer from 0 to 2147483647 \(milliseconds\), got /,
        });
      }
      assert.equal(fs.existsSync(file), false);
    });
  });

  describe('open errors, as fs makes them', () => {
    it('ENOENT on a missing path opened without `size`', async () => {
      const file = scratch.file('missing.img');
      let fsError: NodeJS.ErrnoException | undefined;
      try {
        fs.openSync(file, 'r+');
      } catch (error) {
        fsError = error as NodeJS.ErrnoException;
      }
      await assert.rejects(Device.open(file), (error: NodeJS.ErrnoException) => {
        assert.ok(error instanceof Error);
        assert.equal(error.code, 'ENOENT');
        assert.equal(error.errno, -2);
        assert.equal(error.syscall, 'open');
        assert.equal(error.path, file);
        assert.equal(error.message, `ENOENT: no such file or directory, open '${file}'`);
        assert.deepEqual([error.code, error.errno, error.syscall, error.path, error.message], [fsError!.code, fsError!.errno, fsError!.syscall, fsError!.path, fsError!.message]);
        return true;
      });
      assert.equal(fs.existsSync(file), false);
    });

    it('ENOENT when the directory of a path to create is missing', async () => {
      const file = scratch.file('no-such-dir/x.img');
      await assert.rejects(Device.open(file, { size: 16 * PAGE }), {
        code: 'ENOENT',
        syscall: 'open',
        path: file,
        message: `ENOENT: no such file or directory, open '${file}'`,
      });
    });

    it('EISDIR on a directory, writable or read-only', async () => {
      const dir = scratch.path;
      for (const readOnly of [false, true]) {
        await assert.rejects(Device.open(dir, { readOnly }), {
          code: 'EISDIR',
          errno: -21,
          syscall: 'open',
          path: dir,
          message: `EISDIR: illegal operation on a directory, open '${dir}'`,
        });
      }
    });

    it('ENOTBLK on something neither a file nor a block device (a character device)', async () => {
      for (const direct of [true, false]) {
        await assert.rejects(Device.open('/dev/null', { readOnly: true, direct }), {
          code: 'ENOTBLK',
          errno: -15,
          syscall: 'open',
          path: '/dev/null',
          message: "ENOTBLK: block device required, open '/dev/null'",
        });
      }
    });

    it('ENOTBLK on a FIFO, without hanging in open() for a reader that never comes', async () => {
      const fifo = scratch.file('not-a-volume.fifo');
      execFileSync('mkfifo', [fifo]);
      for (const readOnly of [true, false]) {
        await assert.rejects(Device.open(fifo, { readOnly }), {
          code: 'ENOTBLK',
          syscall: 'open',
          path: fifo,
        });
      }
    });
  });

  describe('closing', () => {
    it('refuses I/O and flush after close with ERR_DEVICE_CLOSED, and a second close is harmless', async () => {
      const file = scratch.file('closed.img');
      const device = await Device.open(file, { size: 16 * PAGE });
      await device.close();
      assert.equal(device.closed, true);
      await device.close();
      const closedError = { code: 'ERR_DEVICE_CLOSED', message: `device '${file}' is closed` };
      await assert.rejects(device.submit([{ op: 'read', offset: 0, buffers: [slab.page(0)] }]), closedError);
      await assert.rejects(device.run([{ op: 'read', offset: 0, buffers: [slab.page(0)] }]), closedError);
      await assert.rejects(device.flush(), closedError);
      // The lock went with the handle.
      await openDevice(file);
    });

    it('waits for the I/O in flight before it closes, and that I/O completes', async () => {
      const file = scratch.file('close-waits.img');
      const device = await Device.open(file, { size: 64 * PAGE, queueDepth: 2 });
      const pages = Array.from({ length: 16 }, (_, i) => slab.page(i));
      pages.forEach((p, i) => p.fill(i + 1));
      const writes = device.submit(pages.map((p, i) => ({ op: 'write' as const, offset: i * PAGE, buffers: [p] })));
      // What the file holds at the moment close() resolves.
      const imageAtClose = device.close().then(() => fs.readFileSync(file));
      assert.equal(device.closed, true, 'closing at once');
      await assert.rejects(device.submit([{ op: 'read', offset: 0, buffers: [slab.page(0)] }]), { code: 'ERR_DEVICE_CLOSED' });
      const results = await writes;
      assert.deepEqual(
        results.map((r) => r.bytes),
        new Array(16).fill(PAGE),
      );
      const image = await imageAtClose;
      for (let i = 0; i < 16; i++) assert.ok(image.subarray(i * PAGE, (i + 1) * PAGE).every((x) => x === i + 1), `block ${i}`);
    });

    it('can be closed from the completion of its last request, on either engine', async () => {
      for (const engine of ['io_uring', 'threads'] as const) {
        if (engine === 'io_uring' && native.probeIoUring() !== 0) continue;
        const file = scratch.file(`close-in-completion-${engine}.img`);
        for (let round = 0; round < 20; round++) {
          const device = await Device.open(file, { size: 16 * PAGE, engine });
          await device.run([{ op: 'write', offset: 0, buffers: [slab.page(0)] }]);
          await device.flush();
          await device.close();
        }
      }
    });
  });
});
