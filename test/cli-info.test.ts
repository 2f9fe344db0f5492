import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { native } from '../src/native';
import { buildCli, attachLoop, detachLoop, loopUnavailable, makeFile, makeTempDir, runCli } from './cli-support';

interface InfoJson {
  type: string;
  size: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  memoryAlignment: number;
  direct: boolean;
  engine: string;
  inUse: string[] | null;
  signature: { name: string } | null;
}

describe('blockfork info', function () {
  let temp: { dir: string; remove: () => void };

  before(async function () {
    // The build of the command line compiles the TypeScript: minutes on a busy machine.
    this.timeout(300_000);
    buildCli();
    temp = await makeTempDir();
  });
  after(() => temp?.remove());

  it('on a file: geometry, O_DIRECT alignment, engine, no signature', function () {
    const file = makeFile(path.join(temp.dir, 'info.img'), 16 << 20);
    const run = runCli(['info', file, '--json']);
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as InfoJson;
    assert.equal(report.type, 'file');
    assert.equal(report.size, 16 << 20);
    assert.ok(report.logicalSectorSize >= 512 && report.memoryAlignment >= 1);
    assert.equal(report.direct, true);
    // What the kernel allows here decides the engine 'auto' picks.
    assert.equal(report.engine, native.probeIoUring() === 0 ? 'io_uring' : 'threads');
    assert.equal(report.inUse, null);
    assert.equal(report.signature, null);

    const text = runCli(['info', file]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^O_DIRECT\s+yes: offsets and lengths in multiples of \d+ B/m);
    assert.match(text.stdout, new RegExp(`^engine \\(auto\\)\\s+${report.engine}`, 'm'));
  });

  it('on a loop device: a block device, not in use', function () {
    const reason = loopUnavailable();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const file = makeFile(path.join(temp.dir, 'loop-info.img'), 32 << 20);
    const loop = attachLoop(file);
    try {
      const run = runCli(['info', loop, '--json']);
      assert.equal(run.status, 0, run.stderr);
      const report = JSON.parse(run.stdout) as InfoJson;
      assert.equal(report.type, 'block device');
      assert.equal(report.size, 32 << 20);
      assert.ok(report.logicalSectorSize >= 512);
      assert.ok(report.physicalSectorSize >= report.logicalSectorSize);
      assert.deepEqual(report.inUse, []);
      assert.equal(report.signature, null);
    } finally {
      detachLoop(loop);
    }
  });
});
