import type { Row } from './results';
import { document, element, niceStep, PALETTE, text } from './svg';

/**
 * The chart of `tx.write` latency over time in the hot-set job: for each
 * variant (fork, fork: false, no commits), the worst latency in each 10 ms,
 * on a log scale so that sub-microsecond forks and millisecond waits for
 * writeout both show. The legend carries each variant's p99.
 */
const WIDTH = 920;
const HEIGHT = 500;
const LEFT = 80;
const RIGHT = 24;
const TOP = 48;
const BOTTOM = 56;

const STYLES: Record<string, { color: string; dash?: string }> = {
  fork: { color: PALETTE[0] },
  'fork: false': { color: PALETTE[1] },
  'fork, no commits': { color: PALETTE[6], dash: '5 3' },
};

export function latencyChart(rows: readonly Row[]): string {
  const series = rows.filter((row) => row.series !== undefined && row.series.length > 0);
  const points = series.flatMap((row) => row.series ?? []);
  const title = 'tx.write latency while commits run back to back (worst in each 10 ms)';
  if (points.length === 0) {
    return document(WIDTH, HEIGHT, title, text(WIDTH / 2, HEIGHT / 2, 'no hot-set results', { 'text-anchor': 'middle' }));
  }
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const endMs = Math.max(...points.map((p) => p.atMs)) + 10;
  const lowDecade = Math.floor(Math.log10(Math.min(...points.map((p) => p.maxUs))));
  const highDecade = Math.max(lowDecade + 1, Math.ceil(Math.log10(Math.max(...points.map((p) => p.maxUs)))));
  const x = (ms: number): number => LEFT + (ms / endMs) * plotWidth;
  const y = (us: number): number => TOP + plotHeight - ((Math.log10(us) - lowDecade) / (highDecade - lowDecade)) * plotHeight;

  const parts: string[] = [text(WIDTH / 2, 24, title, { 'text-anchor': 'middle', 'font-size': 16, 'font-weight': 'bold' })];
  for (let decade = lowDecade; decade <= highDecade; decade++) {
    const yy = y(10 ** decade);
    parts.push(element('line', { x1: LEFT, x2: LEFT + plotWidth, y1: yy, y2: yy, stroke: '#ddd' }));
    parts.push(text(LEFT - 8, yy + 4, formatMicroseconds(10 ** decade), { 'text-anchor': 'end' }));
  }
  const step = niceStep(endMs / 1000, 8);
  for (let s = 0; s <= endMs / 1000 + 1e-9; s += step) {
    const xx = x(s * 1000);
    parts.push(element('line', { x1: xx, x2: xx, y1: TOP + plotHeight, y2: TOP + plotHeight + 5, stroke: '#333' }));
    parts.push(text(xx, TOP + plotHeight + 20, `${+s.toFixed(3)}`, { 'text-anchor': 'middle' }));
  }
  parts.push(element('rect', { x: LEFT, y: TOP, width: plotWidth, height: plotHeight, fill: 'none', stroke: '#333' }));
  parts.push(text(LEFT + plotWidth / 2, HEIGHT - 14, 'time since the loop started (s)', { 'text-anchor': 'middle' }));
  parts.push(text(18, TOP + plotHeight / 2, 'latency (log scale)', { 'text-anchor': 'middle', transform: `rotate(-90 18 ${TOP + plotHeight / 2})` }));

  series.forEach((row, i) => {
    const style = STYLES[row.subject] ?? { color: PALETTE[(i + 2) % PALETTE.length] };
    const path = (row.series ?? []).map((p) => `${x(p.atMs).toFixed(1)},${y(p.maxUs).toFixed(1)}`).join(' ');
    parts.push(
      element('polyline', {
        points: path,
        fill: 'none',
        stroke: style.color,
        'stroke-width': 1.5,
        ...(style.dash ? { 'stroke-dasharray': style.dash } : {}),
        'data-series': row.subject,
      }),
    );
  });

  // The legend sits in the plot's top right corner, on a white box so lines under it do not cross its text.
  const legendWidth = 250;
  const legendX = LEFT + plotWidth - legendWidth - 10;
  const legendY = TOP + 10;
  parts.push(element('rect', { x: legendX, y: legendY, width: legendWidth, height: 10 + series.length * 20, fill: 'white', stroke: '#999', opacity: 0.9 }));
  series.forEach((row, i) => {
    const style = STYLES[row.subject] ?? { color: PALETTE[(i + 2) % PALETTE.length] };
    const yy = legendY + 18 + i * 20;
    parts.push(element('line', { x1: legendX + 10, x2: legendX + 40, y1: yy - 4, y2: yy - 4, stroke: style.color, 'stroke-width': 2, ...(style.dash ? { 'stroke-dasharray': style.dash } : {}) }));
    const p99 = row.latency ? `, p99 ${formatMicroseconds(row.latency.p99Us)}` : '';
    parts.push(text(legendX + 48, yy, `${row.subject}${p99}`));
  });
  return document(WIDTH, HEIGHT, title, parts.join(''));
}

function formatMicroseconds(us: number): string {
  if (us >= 1000) return `${+(us / 1000).toPrecision(3)} ms`;
  return `${+us.toPrecision(3)} µs`;
}
