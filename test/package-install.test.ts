import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prebuildPath, requirePrebuilds, targets } from './support/prebuilds';

const root = path.resolve(__dirname, '..');

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): string {
  return execFileSync(command, args, { ...options, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * The prebuilt package, as a user without a compiler gets it: `npm run
 * prebuild` writes the four Linux prebuilds (x64 and arm64, glibc and musl),
 * `npm pack` ships them with lib and the types, and an install where no cc,
 * g++, make or python3 is on PATH loads the x64 glibc prebuild and does real
 * O_DIRECT I/O through it.
 */
describe('prebuilt package', function () {
  this.timeout(600_000);
  let stage: string;
  let consumer: string;
  let tarball: string;

  before(function () {
    requirePrebuilds(this);
    if (!fs.existsSync(path.join(root, 'lib', 'index.js'))) {
      throw new Error('lib/ is not built: run `npm run build:ts` first');
    }
    // Stage a copy, with only the four prebuilds: nothing else lying in
    // prebuilds/ here can reach the tarball.
    stage = fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-stage-'));
    for (const entry of ['package.json', 'binding.gyp', 'README.md', 'native', 'lib']) {
      if (fs.existsSync(path.join(root, entry))) fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true });
    }
    for (const t of targets) {
      fs.mkdirSync(path.dirname(prebuildPath(t, stage)), { recursive: true });
      fs.copyFileSync(prebuildPath(t), prebuildPath(t, stage));
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
    const packed = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', stage], { cwd: stage }));
    tarball = path.join(stage, packed[0].filename);
    console.log(`      ${packed[0].filename}: ${(packed[0].size / 1024).toFixed(0)} KiB packed, ${(packed[0].unpackedSize / 1024).toFixed(0)} KiB unpacked, ${packed[0].entryCount} files`);
    consumer = fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-consumer-'));
  });

  after(() => {
    for (const dir of [stage, consumer]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball ships the four prebuilds, the compiled JS and the types', () => {
    const listing = run('tar', ['-tzf', tarball], { cwd: stage }).split('\n');
    const prebuilds = targets.map((t) => `package/prebuilds/linux-${t.arch}/blockfork.${t.libc}.node`);
    assert.deepEqual(listing.filter((f) => f.startsWith('package/prebuilds/')).sort(), prebuilds.sort());
    for (const file of ['package/lib/index.js', 'package/lib/index.d.ts', 'package/lib/native.js']) {
      assert.ok(listing.includes(file), `${file} is missing from the tarball`);
    }
    assert.ok(!listing.some((f) => f.startsWith('package/build/')), 'build/ must not ship');
    assert.ok(!listing.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'sources of TS and tests must not ship');
  });

  it('installs and loads where no compiler is on PATH, building nothing', () => {
    // A PATH with node, npm and a shell, and nothing that could compile.
    const bin = path.join(consumer, '.bin-no-compiler');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
    // npm's own entry point, wherever this machine keeps it.
    const npmCli = fs.realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
    fs.writeFileSync(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${npmCli}" "$@"\n`, { mode: 0o755 });
    for (const tool of ['cc', 'gcc', 'g++', 'c++', 'make', 'python3', 'python']) {
      assert.throws(() => execFileSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: bin } }), `${tool} must not be on the restricted PATH`);
    }
    const env: NodeJS.ProcessEnv = { PATH: bin, HOME: process.env.HOME ?? consumer, npm_config_cache: path.join(os.homedir(), '.npm') };
    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    run(path.join(bin, 'npm'), ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: consumer, env });

    const installed = path.join(consumer, 'node_modules', 'blockfork');
    assert.ok(!fs.existsSync(path.join(installed, 'build')), 'the install compiled the addon instead of using the prebuild');
    const image = path.join(stage, 'through-prebuild.img');
    const script = `
      const { Device, Slab } = require('blockfork');
      (async () => {
        const device = await Device.open(${JSON.stringify(image)}, { size: 1 << 20 });
        const slab = Slab.alloc(4096, 1);
        slab.page(0).fill(0x5a);
        await device.run([{ op: 'write', offset: 8192, buffers: [slab.page(0)] }]);
        await device.flush();
        slab.page(0).fill(0);
        await device.run([{ op: 'read', offset: 8192, buffers: [slab.page(0)] }]);
        await device.close();
        console.log(JSON.stringify({ direct: device.geometry.direct, byte: slab.page(0)[4095], addon: require('node-gyp-build').path(require('path').dirname(require.resolve('blockfork/package.json'))) }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const out = JSON.parse(run(process.execPath, ['-e', script], { cwd: consumer, env: { PATH: bin, PREBUILDS_ONLY: '1' } }));
    assert.equal(out.direct, true);
    assert.equal(out.byte, 0x5a);
    assert.match(out.addon, /prebuilds\/linux-x64\/blockfork\.glibc\.node$/);
  });
});
