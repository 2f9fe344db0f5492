import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as blockfork from '../src/index';
import { TempDir } from './support/temp';

/**
 * The README's quick start and its Device example run as written (on temp
 * files instead of the paths they name), so that the first code a user
 * copies cannot drift from the API.
 */

const README = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

/** The first ```ts block after `heading`. */
function snippet(heading: string): string {
  const at = README.indexOf(heading);
  assert.ok(at >= 0, `README has no "${heading}"`);
  const start = README.indexOf('```ts\n', at);
  const end = README.indexOf('```', start + 6);
  return README.slice(start + 6, end);
}

type AsyncFn = (...args: unknown[]) => Promise<void>;
const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => AsyncFn;

/** Runs a snippet with its `import { … } from 'blockfork'` bound to the package, console.log collected. */
async function run(code: string, replacements: [string, string][]): Promise<unknown[][]> {
  let body = code.replace(/^import \{([^}]*)\} from 'blockfork';$/m, 'const {$1} = blockfork;');
  for (const [from, to] of replacements) {
    assert.ok(body.includes(from), `the snippet no longer contains ${from}`);
    body = body.split(from).join(to);
  }
  // Type annotations of the snippets (`const copy: Buffer = …`) are not JavaScript.
  body = body.replace(/const (\w+): \w+ =/g, 'const $1 =');
  const logged: unknown[][] = [];
  const console = { log: (...args: unknown[]) => logged.push(args) };
  await new AsyncFunction('blockfork', 'console', body)(blockfork, console);
  return logged;
}

describe('README examples', function () {
  this.timeout(60_000);
  let temp: TempDir;
  before(() => (temp = new TempDir()));
  after(() => temp.remove());

  it('the quick start runs as written and prints the delta, the value written and the block count', async () => {
    const file = temp.file();
    const logged = await run(snippet('## Quick start'), [["'disk.img'", JSON.stringify(file)]]);
    assert.equal(logged.length, 1);
    const [delta, value, blockCount] = logged[0] as number[];
    assert.equal(delta, 1);
    assert.equal(value, 42);
    assert.ok(blockCount > 0 && blockCount < (1 << 30) / 4096, 'a journaled volume has fewer data blocks than the device');
  });

  it('the Device example runs as written on a file', async () => {
    const file = temp.file();
    const logged = await run(snippet('## Raw aligned I/O: the Device'), [
      ["Device.open('/dev/nvme0n1', {", `Device.open(${JSON.stringify(file)}, { size: 4 << 20,`],
    ]);
    assert.equal(logged.length, 2);
    assert.ok(['io_uring', 'threads'].includes(logged[1][0] as string));
  });
});
