/**
 * Plain-text tables for the terminal: columns padded to their widest cell,
 * numbers right-aligned so that their digits line up. A row with fewer cells
 * than the header ends in a free-running note (`fio missing (…)`) that takes
 * the rest of the line and does not widen the columns it runs across.
 */
export type Align = 'left' | 'right';

export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[]): string {
  const full = rows.filter((row) => row.length === headers.length);
  const widths = headers.map((header, column) => Math.max(header.length, ...full.map((row) => row[column].length)));
  const line = (cells: readonly string[]): string => {
    const last = cells.length < headers.length ? cells.length - 1 : cells.length;
    return cells
      .map((cell, column) => {
        if (column >= last) return cell;
        return align[column] === 'right' ? cell.padStart(widths[column]) : cell.padEnd(widths[column]);
      })
      .join('  ')
      .trimEnd();
  };
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
