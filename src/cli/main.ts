#!/usr/bin/env node
/**
 * The `blockfork` command. Exit codes: 0 ok, 1 failure, 2 usage (whatever
 * commander rejects: unknown options, missing or bad arguments). A failure is
 * one line on stderr with its cause.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { bench, type BenchOptions } from './bench';
import { checkCommand } from './check';
import { oneLine } from '../io/error-chain';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './failure';
import { formatCommand } from './format';
import { info } from './info';
import { formatBytes, parseBytes } from '../bench/units';
import { REGION_UNIT } from '../bench/workloads';

function sizeArgument(text: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes < REGION_UNIT || bytes % REGION_UNIT !== 0) {
    throw new InvalidArgumentError(`expected a whole number of MiB, at least ${formatBytes(REGION_UNIT)} (such as 1073741824, 256M or 1G)`);
  }
  return bytes;
}

function program(): Command {
  const root = new Command('blockfork')
    .description('A write-back block cache for Node.js over O_DIRECT block I/O: benchmark and inspect devices.')
    .showSuggestionAfterError()
    .exitOverride();

  root
    .command('bench')
    .description(
      'Measure the cache against the raw I/O engines (io_uring, thread pool) and fio on one target: sequential and ' +
        'random reads (plain awaited loop, 32 in flight), ' +
        'random writes, awaited one-block commits, tx.write latency on a hot set under back-to-back commits (fork ' +
        'against fork: false), and in-memory costs; subjects alternated, median of 3 runs. ' +
        'WRITES OVER PATH (after refusing a device that is in use or holds a file system, unless --force).',
    )
    .argument('[path]', 'a block device or an existing file; none: a scratch image in a directory that supports O_DIRECT, removed afterwards')
    .option('--quick', 'one run of each, 256 MiB scratch image, short timed jobs: checks that the bench works, not for judging speed', false)
    .option('--json', 'print the results as JSON on stdout instead of a table', false)
    .addOption(new Option('--size <bytes>', 'bytes to cover from offset 0 (1G, 256M); the scratch image\'s size (default 1 GiB, 256 MiB with --quick)').argParser(sizeArgument))
    .option('--force', 'write even on a device that is mounted, in use or holds a known signature', false)
    .option('--report <dir>', 'also write the results (bench.json) and charts (latency.svg, throughput.svg) into DIR')
    .option('--only <ids>', 'run only these comparisons, comma-separated: sequential, random, sequential-read, fragmentation, redirect-threshold, random-read, commits, hot-set, slow-sata, slow-network, clients-1, clients-8, clients-64, replay, memory')
    .action((path: string | undefined, options: BenchOptions) => bench(path, options));

  root
    .command('info')
    .description('Show what blockfork sees of a device or file: geometry, O_DIRECT alignment, the engine it would use, whether it is in use or holds a file system. Reads only.')
    .argument('<path>', 'a block device or a file')
    .option('--json', 'print the report as JSON on stdout', false)
    .action((path: string, options: { json: boolean }) => info(path, options));

  root.addCommand(formatCommand());
  root.addCommand(checkCommand());

  // Every subcommand reports usage errors through the root's exit override.
  for (const command of root.commands) command.exitOverride();
  return root;
}

async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv as string[]);
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed its message (or the help it was asked for).
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? EXIT_OK : EXIT_USAGE;
    }
    process.stderr.write(`blockfork: ${oneLine(error)}\n`);
    return EXIT_FAILURE;
  }
}

void main(process.argv).then((code) => {
  process.exitCode = code;
});
