/**
 * Just enough SVG to draw the bench's charts by hand: elements with escaped
 * text and attributes, and round axis steps. No dependency: the charts are
 * lines, bars and text, and the report must open in any browser as is.
 */
export type Attributes = Record<string, string | number>;

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** One element; `content` is markup already (children), or text when `text` is given instead. */
export function element(name: string, attributes: Attributes, content = ''): string {
  const attrs = Object.entries(attributes)
    .map(([key, value]) => ` ${key}="${escapeXml(typeof value === 'number' ? round(value) : value)}"`)
    .join('');
  return content === '' ? `<${name}${attrs}/>` : `<${name}${attrs}>${content}</${name}>`;
}

export function text(x: number, y: number, value: string, attributes: Attributes = {}): string {
  return element('text', { x, y, ...attributes }, escapeXml(value));
}

/** Coordinates to a tenth of a pixel: finer is invisible and only bloats the file. */
function round(value: number): string {
  return String(Math.round(value * 10) / 10);
}

/** A whole document of `width` × `height` with a white background and the charts' font. */
export function document(width: number, height: number, title: string, body: string): string {
  return (
    element(
      'svg',
      { xmlns: 'http://www.w3.org/2000/svg', width, height, viewBox: `0 0 ${width} ${height}`, 'font-family': 'sans-serif', 'font-size': 12 },
      element('title', {}, escapeXml(title)) + element('rect', { x: 0, y: 0, width, height, fill: 'white' }) + body,
    ) + '\n'
  );
}

/** A step of 1, 2 or 5 × 10^k that cuts `range` into about `count` parts. */
export function niceStep(range: number, count: number): number {
  const raw = range / count;
  const decade = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / decade;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * decade;
}

/** Colours that stay apart for the colour-blind (Okabe and Ito). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#999999'];
