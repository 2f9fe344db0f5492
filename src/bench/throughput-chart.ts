import { formatCount } from './goals';
import type { Row } from './results';
import { document, element, niceStep, PALETTE, text } from './svg';

/**
 * The bar chart of write throughput: for each comparison that writes to the
 * device, a bar per subject, as a ratio to fio's in the same run (to the raw
 * io_uring engine's when fio is missing), so that jobs of different units
 * share one axis. Each bar is labelled with its absolute rate, and a cache
 * bar carries its goal as a dashed mark.
 */
const WIDTH = 920;
const HEIGHT = 520;
const LEFT = 70;
const RIGHT = 24;
const TOP = 48;
const BOTTOM = 90;
const COMPARISONS = ['sequential', 'random', 'commits'];

export function throughputChart(rows: readonly Row[]): string {
  const byFio = rows.some((row) => row.subject === 'fio' && row.runs.length > 0);
  const reference = byFio ? 'fio' : 'io_uring';
  const ratioOf = (row: Row): number | null => (byFio ? row.vsFio : row.vsRaw);
  const groups = COMPARISONS.map((id) => rows.filter((row) => row.comparison === id)).filter((group) => group.length > 0);
  const subjects = [...new Set(groups.flat().map((row) => row.subject))];
  const title = `Write throughput against ${reference}, same target, same run (1.0 = ${reference})`;

  const ratios = groups.flat().map(ratioOf).filter((r): r is number => r !== null);
  const goals = byFio ? groups.flat().flatMap((row) => row.goals.filter((g) => g.kind === 'vs-fio').map((g) => g.threshold)) : [];
  const top = Math.max(1, ...ratios, ...goals) * 1.15;
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const y = (ratio: number): number => TOP + plotHeight - (ratio / top) * plotHeight;

  const parts: string[] = [text(WIDTH / 2, 24, title, { 'text-anchor': 'middle', 'font-size': 16, 'font-weight': 'bold' })];
  const step = niceStep(top, 6);
  for (let r = 0; r <= top + 1e-9; r += step) {
    parts.push(element('line', { x1: LEFT, x2: LEFT + plotWidth, y1: y(r), y2: y(r), stroke: r === 0 ? '#333' : '#ddd' }));
    parts.push(text(LEFT - 8, y(r) + 4, r.toFixed(step < 1 ? 1 : 0), { 'text-anchor': 'end' }));
  }
  parts.push(text(18, TOP + plotHeight / 2, `× ${reference}`, { 'text-anchor': 'middle', transform: `rotate(-90 18 ${TOP + plotHeight / 2})` }));

  const groupWidth = plotWidth / Math.max(1, groups.length);
  const barWidth = Math.min(56, (groupWidth - 40) / Math.max(1, subjects.length));
  groups.forEach((group, g) => {
    const left = LEFT + g * groupWidth + (groupWidth - barWidth * group.length) / 2;
    group.forEach((row, i) => {
      const color = PALETTE[subjects.indexOf(row.subject) % PALETTE.length];
      const x = left + i * barWidth;
      const ratio = ratioOf(row);
      if (ratio === null) {
        parts.push(text(x + barWidth / 2, y(0) - 6, 'n/a', { 'text-anchor': 'middle', fill: '#666', 'font-size': 10 }));
        return;
      }
      parts.push(element('rect', { x: x + 3, y: y(ratio), width: barWidth - 6, height: y(0) - y(ratio), fill: color, 'data-series': row.subject }));
      parts.push(text(x + barWidth / 2, y(ratio) - 5, absolute(row), { 'text-anchor': 'middle', 'font-size': 10 }));
      for (const goal of row.goals) {
        if (goal.kind !== 'vs-fio' || !byFio) continue;
        parts.push(element('line', { x1: x, x2: x + barWidth, y1: y(goal.threshold), y2: y(goal.threshold), stroke: '#000', 'stroke-width': 1.5, 'stroke-dasharray': '4 2' }));
      }
    });
    parts.push(text(LEFT + g * groupWidth + groupWidth / 2, y(0) + 20, group[0].title, { 'text-anchor': 'middle', 'font-size': 13 }));
  });

  // Legend under the axis: one swatch per subject, and what the dashed mark means.
  let legendX = LEFT;
  const legendY = HEIGHT - 34;
  for (const [i, subject] of subjects.entries()) {
    parts.push(element('rect', { x: legendX, y: legendY - 10, width: 12, height: 12, fill: PALETTE[i % PALETTE.length] }));
    parts.push(text(legendX + 18, legendY, subject));
    legendX += 30 + subject.length * 7;
  }
  parts.push(element('line', { x1: legendX, x2: legendX + 24, y1: legendY - 4, y2: legendY - 4, stroke: '#000', 'stroke-width': 1.5, 'stroke-dasharray': '4 2' }));
  parts.push(text(legendX + 30, legendY, 'goal (issues 3, 4)'));
  return document(WIDTH, HEIGHT, title, parts.join(''));
}

/** The bar's own rate: MB/s where a job's operations differ in size (sequential), else operations per second. */
function absolute(row: Row): string {
  if (row.comparison === 'sequential' && row.mbPerSecond !== null) return `${row.mbPerSecond.toFixed(0)} MB/s`;
  return row.opsPerSecond === null ? '' : `${formatCount(row.opsPerSecond)}/s`;
}
