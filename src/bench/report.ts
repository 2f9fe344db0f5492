import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchReport } from './run';
import { oneLine } from '../io/error-chain';
import { BenchError } from './bench-error';
import { latencyChart } from './latency-chart';
import { throughputChart } from './throughput-chart';

/**
 * `--report DIR`: the results as JSON (what --json prints) and the two
 * charts as SVG, which any browser opens. Returns the files written.
 */
const REPORT_FILES = { json: 'bench.json', latency: 'latency.svg', throughput: 'throughput.svg' } as const;

export function writeReport(dir: string, report: BenchReport): string[] {
  const files: [string, string][] = [
    [REPORT_FILES.json, JSON.stringify(report, null, 2) + '\n'],
    [REPORT_FILES.latency, latencyChart(report.results.filter((row) => row.comparison === 'hot-set'))],
    [REPORT_FILES.throughput, throughputChart(report.results)],
  ];
  try {
    fs.mkdirSync(dir, { recursive: true });
    return files.map(([name, content]) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      return file;
    });
  } catch (error) {
    throw new BenchError(`cannot write the report into ${dir}: ${oneLine(error)}`);
  }
}
