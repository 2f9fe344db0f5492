/**
 * Byte quantities as people type and read them: binary suffixes (1G is
 * 2^30 bytes, as dd and fio read it) in, binary units out.
 */

const SUFFIXES: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** `4096`, `256M`, `1G`, `1GiB`: a whole number of bytes, or undefined when it is not one. */
export function parseBytes(text: string): number | undefined {
  const match = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) return undefined;
  const bytes = Number(match[1]) * SUFFIXES[match[2].toLowerCase()];
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
