import * as v8 from 'node:v8';
import * as vm from 'node:vm';

/**
 * A full garbage collection, for measuring what stays on the JS heap. Node
 * exposes `gc` only under --expose-gc; rather than re-execute the CLI with
 * that flag (and forward its signals and exit code), the flag is set at run
 * time, which exposes `gc` in contexts created afterwards: a fresh vm
 * context hands it over. Undefined where that does not work, and the caller
 * says its number includes garbage.
 */
function findGc(): (() => void) | undefined {
  const global = globalThis as { gc?: () => void };
  if (typeof global.gc === 'function') return global.gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

export const collectGarbage: (() => void) | undefined = findGc();
