import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { attachLoop, buildCli, detachLoop, errorLine, loopUnavailable, makeFile, makeTempDir, runCli } from './cli-support';

/** mkfs.ext4 where it is installed; else the ext2/3/4 magic written by hand where mkfs would put it. */
function formatExt4(target: string): void {
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', target]);
  if (!mkfs.error && mkfs.status === 0) return;
  const fd = fs.openSync(target, 'r+');
  try {
    fs.writeSync(fd, Buffer.from([0x53, 0xef]), 0, 2, 1080);
  } finally {
    fs.closeSync(fd);
  }
}

function ext4Magic(target: string): string {
  const fd = fs.openSync(target, 'r');
  const magic = Buffer.alloc(2);
  try {
    fs.readSync(fd, magic, 0, 2, 1080);
  } finally {
    fs.closeSync(fd);
  }
  return magic.toString('hex');
}

describe('bench refuses to destroy data without --force', function () {
  let temp: { dir: string; remove: () => void };

  before(async function () {
    // The build of the command line compiles the TypeScript: minutes on a busy machine.
    this.timeout(300_000);
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  it('a loop device carrying an ext4 file system: refused, left intact; written with --force', function () {
    const reason = loopUnavailable();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const file = makeFile(path.join(temp.dir, 'ext4.img'), 32 << 20);
    const loop = attachLoop(file);
    try {
      formatExt4(loop);
      const refused = runCli(['bench', loop, '--quick', '--size', '8M']);
      assert.equal(refused.status, 1);
      assert.match(errorLine(refused.stderr), /^blockfork: refusing to write on \/dev\/loop\d+: it holds a ext2\/3\/4 signature \(0xEF53 at byte 1080\); pass --force/);
      assert.equal(ext4Magic(loop), '53ef', 'the file system was touched');

      const info = runCli(['info', loop, '--json']);
      assert.equal(info.status, 0, info.stderr);
      assert.equal((JSON.parse(info.stdout) as { signature: { name: string } }).signature.name, 'ext2/3/4');

      const forced = runCli(['bench', loop, '--quick', '--json', '--size', '8M', '--force']);
      assert.equal(forced.status, 0, forced.stderr);
      assert.notEqual(ext4Magic(loop), '53ef');
    } finally {
      detachLoop(loop);
    }
  });

  it('a mounted loop device: refused, with where it is mounted', function () {
    const reason = loopUnavailable() ?? (spawnSync('mkfs.ext4', ['-V']).error ? 'mkfs.ext4 is not installed' : undefined);
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const file = makeFile(path.join(temp.dir, 'mounted.img'), 32 << 20);
    const loop = attachLoop(file);
    const mountPoint = fs.mkdtempSync(path.join(temp.dir, 'mnt-'));
    try {
      formatExt4(loop);
      const mount = spawnSync('mount', [loop, mountPoint], { encoding: 'utf8' });
      if (mount.status !== 0) {
        console.log(`      skipped: mount failed: ${mount.stderr.trim()}`);
        this.skip();
      }
      try {
        const refused = runCli(['bench', loop, '--quick', '--size', '8M']);
        assert.equal(refused.status, 1);
        assert.match(errorLine(refused.stderr), new RegExp(`refusing to write on ${loop}: mounted on ${mountPoint}`));
        const info = runCli(['info', loop, '--json']);
        assert.deepEqual((JSON.parse(info.stdout) as { inUse: string[] }).inUse, [`mounted on ${mountPoint}`]);
      } finally {
        spawnSync('umount', [mountPoint]);
      }
    } finally {
      detachLoop(loop);
    }
  });

  it('a file holding an xfs signature: refused', function () {
    const file = makeFile(path.join(temp.dir, 'xfs.img'), 8 << 20);
    fs.writeFileSync(file, Buffer.concat([Buffer.from('XFSB'), Buffer.alloc(8 << 20)]).subarray(0, 8 << 20));
    const refused = runCli(['bench', file, '--quick', '--size', '8M']);
    assert.equal(refused.status, 1);
    assert.match(errorLine(refused.stderr), /it holds a xfs signature \('XFSB' at byte 0\)/);
  });
});

describe('bench and blockfork volumes', function () {
  this.timeout(120_000);
  let temp: { dir: string; remove: () => void };
  before(async () => {
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  it('a file holding a blockfork volume: refused without --force, and left intact', function () {
    const file = path.join(temp.dir, 'volume.img');
    const formatted = runCli(['format', file, '--size', '8M']);
    assert.equal(formatted.status, 0, formatted.stderr);
    const before = fs.readFileSync(file);
    const refused = runCli(['bench', file, '--quick', '--size', '8M']);
    assert.equal(refused.status, 1);
    assert.match(errorLine(refused.stderr), /refusing to write on .*volume\.img: it holds a blockfork volume \(block size 4096, \d+ data blocks\); pass --force/);
    assert.ok(fs.readFileSync(file).equals(before), 'the refused bench wrote nothing');
  });
});
