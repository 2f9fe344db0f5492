import { strict as assert } from 'node:assert';
import { buildCli, errorLine, runCli } from './cli-support';

describe('blockfork exit codes and errors', function () {
  before(() => buildCli());

  for (const command of [[], ['bench'], ['info']]) {
    it(`${['blockfork', ...command, '--help'].join(' ')} prints usage and exits 0`, () => {
      const run = runCli([...command, '--help']);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^Usage: blockfork ${command.length ? command[0] + ' ' : ''}`));
    });
  }

  const usage: [string, string[], RegExp][] = [
    ['no command', [], /Usage: blockfork/],
    ['an unknown command', ['frob'], /unknown command 'frob'/],
    ['an unknown option', ['bench', '--bogus'], /unknown option '--bogus'/],
    ['a --size that is not a whole number of MiB', ['bench', '--size', '1000'], /--size <bytes>.*invalid/],
    ['info without PATH', ['info'], /missing required argument 'path'/],
    ['too many arguments', ['info', 'a', 'b'], /too many arguments/],
  ];
  for (const [what, args, message] of usage) {
    it(`${what} is a usage error: exit 2`, () => {
      const run = runCli(args);
      assert.equal(run.status, 2);
      assert.match(run.stderr, message);
    });
  }

  for (const command of ['info', 'bench']) {
    it(`${command} on a missing path exits 1 with one line naming the cause`, () => {
      const run = runCli([command, '/nonexistent/blockfork-test.img']);
      assert.equal(run.status, 1);
      assert.equal(run.stdout, '');
      assert.match(errorLine(run.stderr), /^blockfork: ENOENT: no such file or directory, stat '\/nonexistent\/blockfork-test\.img'$/);
    });
  }

  it('info on a directory exits 1 with one line', () => {
    const run = runCli(['info', '/']);
    assert.equal(run.status, 1);
    assert.match(errorLine(run.stderr), /^blockfork: \/ is neither a regular file nor a block device$/);
  });
});
