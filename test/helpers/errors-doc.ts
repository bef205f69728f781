import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** One row of the summary table in docs/errors.md. */
export interface ErrorsDocRow {
  code: string;
  /** The retryable cell: `yes` or `no`, maybe followed by the exception. */
  retryable: string;
  exit: string;
}

/** What docs/errors.md says about the error codes. */
export interface ErrorsDoc {
  /** Codes with a `### \`UT_ERR_…\`` heading, in order. */
  headings: string[];
  /** Rows of the summary table, in order. */
  rows: ErrorsDocRow[];
  /** Every `UT_ERR_…` token anywhere in the document. */
  mentioned: Set<string>;
}

// Compiled to dist/test/helpers/: the repository root is three levels up.
const DOC = fileURLToPath(new URL('../../../docs/errors.md', import.meta.url));

/** Reads docs/errors.md and pulls out its headings, its summary table and every code it names. */
export function readErrorsDoc(): ErrorsDoc {
  const text = readFileSync(DOC, 'utf8');
  const headings: string[] = [];
  const rows: ErrorsDocRow[] = [];
  for (const line of text.split('\n')) {
    const h = /^###\s+`(UT_ERR_[A-Z0-9_]+)`\s*$/.exec(line);
    if (h) headings.push(h[1]!);
    const r = /^\|\s*\[`(UT_ERR_[A-Z0-9_]+)`\]\(#([a-z0-9_]+)\)\s*\|/.exec(line);
    if (r) {
      const cells = line.split('|').slice(1, -1).map((c) => c.trim());
      if (r[2] !== r[1]!.toLowerCase()) throw new Error(`summary row ${r[1]} links #${r[2]}`);
      rows.push({ code: r[1]!, retryable: cells[2] ?? '', exit: cells[3] ?? '' });
    }
  }
  return { headings, rows, mentioned: new Set(text.match(/UT_ERR_[A-Z0-9_]+/g) ?? []) };
}
