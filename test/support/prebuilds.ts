import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The prebuilds that `npm run prebuild` writes (scripts/prebuild.js, from
 * the targets in scripts/prebuild-targets.json), and what readelf and
 * objdump say about them.
 */

export const root = path.resolve(__dirname, '..', '..');

export interface PrebuildTarget {
  readonly name: string;
  readonly arch: 'x64' | 'arm64';
  readonly libc: 'glibc' | 'musl';
  /** Zig's target triple (with the glibc version for glibc). */
  readonly zig: string;
  /** What `readelf -h` prints as Machine. */
  readonly machine: string;
}

interface TargetsFile {
  readonly glibcFloor: string;
  readonly targets: readonly PrebuildTarget[];
}

const targetsFile = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'prebuild-targets.json'), 'utf8')) as TargetsFile;

export const targets = targetsFile.targets;
export const glibcFloor = targetsFile.glibcFloor;

/** Where a target's binary lies, under `dir` (the package root by default). */
export function prebuildPath(target: PrebuildTarget, dir = root): string {
  return path.join(dir, 'prebuilds', `linux-${target.arch}`, `blockfork.${target.libc}.node`);
}

/**
 * Undefined when every prebuild is there; else why not. A missing prebuild
 * fails in CI (.ci/run builds them first) and skips elsewhere, saying so.
 */
export function missingPrebuilds(): string | undefined {
  const missing = targets.filter((t) => !fs.existsSync(prebuildPath(t)));
  if (missing.length === 0) return undefined;
  return `no prebuild for ${missing.map((t) => t.name).join(', ')}: run \`npm run prebuild\` first`;
}

/** In mocha's before(): fail in CI, skip (printing why) elsewhere. */
export function requirePrebuilds(context: Mocha.Context): void {
  const why = missingPrebuilds();
  if (!why) return;
  if (process.env.CI) throw new Error(why);
  console.log(`      skipped: ${why}`);
  context.skip();
}

export function tool(command: string, args: readonly string[]): string {
  const run = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.error) throw run.error;
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${run.status}: ${run.stderr}`);
  return run.stdout;
}

/** True when `command` runs (exit status 0 for `args`). */
export function has(command: string, args: readonly string[] = ['--version']): boolean {
  const run = spawnSync(command, args, { encoding: 'utf8' });
  return !run.error && run.status === 0;
}

/** Compares dotted versions: negative, 0 or positive. */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export interface ElfFacts {
  /** readelf -h: Class, Type, Machine. */
  readonly elfClass: string;
  readonly type: string;
  readonly machine: string;
  /** readelf -d: the NEEDED libraries. */
  readonly needed: readonly string[];
  /** readelf -l: the program interpreter, if any. */
  readonly interpreter: string | undefined;
  /** readelf -S: the section names. */
  readonly sections: readonly string[];
  /** objdump -T: every version a dynamic symbol references or defines (GLIBC_2.17, ...). */
  readonly versions: readonly string[];
  /** objdump -T: the dynamic symbols, split into undefined ones and defined ones. */
  readonly undefinedSymbols: readonly string[];
  readonly definedSymbols: readonly string[];
}

export function elfFacts(file: string): ElfFacts {
  const header = tool('readelf', ['-h', '-W', file]);
  const field = (name: string): string => {
    const m = new RegExp(`^\\s*${name}:\\s*(.+)$`, 'm').exec(header);
    if (!m) throw new Error(`readelf -h ${file}: no ${name}`);
    return m[1].trim();
  };
  const dynamic = tool('readelf', ['-d', '-W', file]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const program = tool('readelf', ['-l', '-W', file]);
  const interp = /Requesting program interpreter: ([^\]]+)\]/.exec(program);
  const sectionTable = tool('readelf', ['-S', '-W', file]);
  const sections = [...sectionTable.matchAll(/^\s*\[\s*\d+\]\s+(\S+)/gm)].map((m) => m[1]);
  // objdump -T lines: ADDRESS FLAGS SECTION SIZE [VERSION] NAME. The host
  // objdump reads aarch64 as generic little-endian ELF, which is enough for
  // the dynamic symbol table.
  const dynsyms = tool('objdump', ['-T', file]).split('\n');
  const versions = new Set<string>();
  const undefinedSymbols: string[] = [];
  const definedSymbols: string[] = [];
  for (const line of dynsyms) {
    const m = /^[0-9a-f]{8,16}\s.*\s(\S+)\t[0-9a-f]+\s+(?:(\S+)\s+)?(\S+)$/.exec(line);
    if (!m) continue;
    const [, section, version, name] = m;
    if (version && !/^\(?Base\)?$/.test(version)) versions.add(version.replace(/[()]/g, ''));
    (section === '*UND*' ? undefinedSymbols : definedSymbols).push(name);
  }
  return {
    elfClass: field('Class'),
    type: field('Type'),
    machine: field('Machine'),
    needed,
    interpreter: interp?.[1],
    sections,
    versions: [...versions],
    undefinedSymbols,
    definedSymbols,
  };
}

/** The highest GLIBC_x.y among `versions`, or undefined. */
export function maxGlibc(versions: readonly string[]): string | undefined {
  const glibc = versions.filter((v) => v.startsWith('GLIBC_') && /^GLIBC_[0-9.]+$/.test(v)).map((v) => v.slice('GLIBC_'.length));
  return glibc.sort(compareVersions).at(-1);
}
