// How wide human output may be, and the helpers every renderer uses to stay inside it: tables pick a narrower
// layout (fewer columns, stacked rows) instead of letting lines wrap, and prose lines wrap at word boundaries.

/** Width of human output when stdout is not a terminal (a pipe, a file, CI logs). */
export const PIPED_WIDTH = 100;

/** Narrowest width a renderer plans for, whatever a terminal reports. */
export const MIN_WIDTH = 40;

/** What outputWidth reads from a stream. */
export interface WidthSource {
  isTTY?: boolean;
  columns?: number;
}

/** Columns human output may use: the terminal's width on a TTY, PIPED_WIDTH otherwise. */
export function outputWidth(stream: WidthSource = process.stdout): number {
  if (stream.isTTY === true && typeof stream.columns === 'number' && stream.columns > 0) return Math.max(MIN_WIDTH, stream.columns);
  return PIPED_WIDTH;
}

// CSI sequences (colours) and OSC 8 hyperlinks.
// eslint-disable-next-line no-control-regex
const ANSI_RE = /\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

/** `s` without ANSI escape sequences. */
export function stripAnsi(s: string): string {
  return s.replace(ANSI_RE, '');
}

/** Columns `s` takes on a terminal: code points without escape sequences (box drawing and µ are one column each). */
export function displayWidth(s: string): number {
  let n = 0;
  for (const ch of stripAnsi(s)) if (ch !== '\n') n++;
  return n;
}

/** Width of the widest line of `text`. */
export function maxLineWidth(text: string): number {
  let max = 0;
  for (const line of text.split('\n')) max = Math.max(max, displayWidth(line));
  return max;
}

/**
 * Renders the layouts in order, widest first, and returns the first whose every line fits `width`; the last one
 * rendered (the narrowest) when none does. A layout returns null when it cannot be drawn at all at this width.
 */
export function firstThatFits(width: number, layouts: ReadonlyArray<() => string | null>): string {
  let out = '';
  for (const render of layouts) {
    const text = render();
    if (text === null) continue;
    out = text;
    if (maxLineWidth(out) <= width) return out;
  }
  return out;
}

/**
 * Wraps one line of prose at spaces so that no line exceeds `width`; continuation lines start with `indent`.
 * A word longer than a line is left whole. ANSI styling that spans a break is kept as is (each segment keeps
 * whatever escapes it contains).
 */
export function wrapWords(line: string, width: number, indent = '  '): string[] {
  if (displayWidth(line) <= width) return [line];
  const lead = /^ */.exec(stripAnsi(line))?.[0] ?? '';
  const words = line.slice(lead.length).split(' ');
  const out: string[] = [];
  let current = lead;
  let currentWidth = lead.length;
  let empty = true;
  for (const word of words) {
    const w = displayWidth(word);
    if (!empty && currentWidth + 1 + w > width) {
      out.push(current);
      current = indent + word;
      currentWidth = indent.length + w;
    } else {
      current += (empty ? '' : ' ') + word;
      currentWidth += (empty ? 0 : 1) + w;
    }
    empty = false;
  }
  out.push(current);
  return out;
}

/** wrapWords applied to every line of `text`. */
export function wrapText(text: string, width: number, indent = '  '): string {
  return text
    .split('\n')
    .flatMap((l) => wrapWords(l, width, indent))
    .join('\n');
}

/**
 * Joins `parts` after `head` (which ends with its own space) with `sep`, starting a new line (with `indent`) before a part that would overflow
 * `width`, so that breaks fall between parts rather than inside them.
 */
export function packParts(head: string, parts: readonly string[], width: number, sep = '; ', indent = '  '): string {
  const lines: string[] = [];
  let current = head;
  parts.forEach((part, i) => {
    const piece = i < parts.length - 1 ? `${part}${sep.trimEnd()}` : part;
    const joiner = current === head || current === indent ? '' : ' ';
    if (current !== head && current !== indent && displayWidth(current) + 1 + displayWidth(piece) > width) {
      lines.push(current);
      current = indent + piece;
    } else {
      current += joiner + piece;
    }
  });
  lines.push(current);
  return lines.join('\n');
}
