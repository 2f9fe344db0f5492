/**
 * What the CLI tests share: the built command run as a child process, temp
 * files on a file system that does O_DIRECT, and loop devices that are torn
 * down even when a test fails.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chooseScratchDirectory } from '../src/bench/scratch-image';

const ROOT = path.join(__dirname, '..');
export const CLI = path.join(ROOT, 'lib', 'cli', 'main.js');

let built = false;

/**
 * The tests run the CLI as users do, from lib/: compile it once first, so that
 * they never run a stale build. Type errors elsewhere do not stop the emit
 * (the typecheck step reports them); a missing output does.
 */
export function buildCli(): void {
  if (built) return;
  spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], {
    stdio: 'ignore',
  });
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} was not built: run npx tsc -p tsconfig.json and read its errors`);
  built = true;
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: readonly string[]): CliRun {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A fresh directory on a disk file system (not tmpfs), removed by the returned function. */
export async function makeTempDir(): Promise<{ dir: string; remove: () => void }> {
  const { dir: parent } = await chooseScratchDirectory(64 << 20);
  const dir = fs.mkdtempSync(path.join(parent, 'blockfork-cli-test-'));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A sparse file of `size` bytes. */
export function makeFile(file: string, size: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  return file;
}

/** Why loop devices cannot be used here, or undefined when they can. */
export function loopUnavailable(): string | undefined {
  if (!fs.existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  if (process.getuid?.() !== 0) return 'losetup needs root';
  if (spawnSync('losetup', ['--version']).error) return 'losetup is not installed';
  return undefined;
}

/** Attaches `file` to a free loop device; returns its path. */
export function attachLoop(file: string): string {
  const result = spawnSync('losetup', ['--find', '--show', file], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`losetup ${file} failed: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

export function detachLoop(device: string): void {
  spawnSync('losetup', ['--detach', device]);
}

/** The one line a failure prints: `blockfork: <message with its cause>`. */
export function errorLine(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line.length > 0);
  if (lines.length !== 1) throw new Error(`expected one line on stderr, got ${lines.length}: ${JSON.stringify(stderr)}`);
  return lines[0];
}
