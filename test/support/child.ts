import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Scripts run in a child node (with ts-node), for what must not take mocha
 * down if it crashes or hangs: a crash is a signal or an exit status, a hang
 * a timeout, and the child prints its findings as JSON on its last line.
 * With `faults`, the child runs with the fault-injection library preloaded
 * (fault-shim.c), switched by files in `faults.dir`.
 */

export const root = path.resolve(__dirname, '..', '..');

/** A module of this repository, as a child's script requires it. */
export const source = (relative: string): string => JSON.stringify(path.join(root, relative));

/** Lines that start a script: ts-node, so that src/*.ts can be required (in Workers too). */
export const tsNode = `require(${source('node_modules/ts-node')}).register({ transpileOnly: true, project: ${source('tsconfig.json')} });`;

export interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON of the last line of stdout, if it parses. */
  report: unknown;
}

export interface ChildOptions {
  timeoutMs?: number;
  nodeArgs?: string[];
  faults?: { dir: string };
  env?: Record<string, string>;
}

let shim: string | undefined;

/** Compiles fault-shim.c once per process (cc from the toolchain, nothing else). */
export function faultShim(): string {
  if (shim !== undefined) return shim;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockfork-shim-'));
  const out = path.join(dir, 'fault-shim.so');
  // Without the sanitizer run's preload: the compiler is no subject here.
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', out, path.join(__dirname, 'fault-shim.c'), '-ldl', '-lpthread'], { encoding: 'utf8', env });
  if (cc.status !== 0) throw new Error(`cc fault-shim.c failed: ${cc.error?.message ?? cc.stderr}`);
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return (shim = out);
}

export function runChild(script: string, options: ChildOptions = {}): ChildResult {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  if (options.faults) {
    // First, before any sanitizer runtime the run preloads (which then must
    // not insist on coming first): its calls are the ones interposed.
    env.LD_PRELOAD = [faultShim(), process.env.LD_PRELOAD].filter(Boolean).join(' ');
    if (process.env.LD_PRELOAD) env.ASAN_OPTIONS = `${process.env.ASAN_OPTIONS ?? ''}:verify_asan_link_order=0`;
    env.BLOCKFORK_FAULT_DIR = options.faults.dir;
    // libuv's own io_uring (for fs) stays out of the way of the interposed io_uring_enter.
    env.UV_USE_IO_URING = '0';
  }
  const child = spawnSync(process.execPath, [...(options.nodeArgs ?? []), '-e', `${tsNode}\n${script}`], {
    cwd: root,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
    env,
  });
  const lines = (child.stdout ?? '').trim().split('\n');
  let report: unknown;
  try {
    report = JSON.parse(lines[lines.length - 1]);
  } catch {
    report = undefined;
  }
  return { status: child.status, signal: child.signal, stdout: child.stdout ?? '', stderr: child.stderr ?? '', report };
}

/** What a test says when a child did not finish as it should. */
export function describeChild(child: ChildResult): string {
  const how = child.signal ? `died of ${child.signal}` : `exited with ${String(child.status)}`;
  return `the child ${how}; stderr: ${child.stderr.slice(-2000)}`;
}
