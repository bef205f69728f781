import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/cli/: the repository root is three levels up.
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** Largest README.md in bytes: the README is the front door; reference and measurements live in docs/. */
const README_MAX_BYTES = 15 * 1024;

interface Link {
  target: string;
  line: number;
}

// CommonMark: a fence is ``` or ~~~ (3 or more), indented by at most 3 spaces.
const FENCE_RE = /^ {0,3}(`{3,}|~{3,})/;

/** Lines outside fenced code blocks, with their 1-based line numbers. */
function proseLines(markdown: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  let fence: string | null = null;
  markdown.split('\n').forEach((text, i) => {
    const m = FENCE_RE.exec(text);
    if (fence === null && m) {
      fence = m[1]!;
      return;
    }
    if (fence !== null) {
      if (m && m[1]![0] === fence[0] && m[1]!.length >= fence.length) fence = null;
      return;
    }
    out.push({ text, line: i + 1 });
  });
  return out;
}

/** Code spans are not links: drop them before looking for `[text](target)`. */
function withoutCodeSpans(text: string): string {
  return text.replace(/(`+)[\s\S]*?\1/g, 'code');
}

/** Inline links and images, outside code. */
function findLinks(markdown: string): Link[] {
  const links: Link[] = [];
  for (const { text, line } of proseLines(markdown)) {
    for (const m of withoutCodeSpans(text).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ target: m[1]!, line });
    }
  }
  return links;
}

/** The anchor GitHub gives a heading: rendered text, lowercased, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`+/g, '')
    .replace(/<[^>]+>/g, '');
  return rendered
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every anchor a Markdown file offers, duplicates numbered as GitHub does (`name`, `name-1`, ...). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { text } of proseLines(markdown)) {
    const m = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(text);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Problems with the relative links of `markdown`, read as if it were the file `file` (absolute path). */
function checkLinks(file: string, markdown: string): string[] {
  const problems: string[] = [];
  const where = (l: Link): string => `${path.relative(ROOT, file)}:${l.line}: ${l.target}`;
  for (const link of findLinks(markdown)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(link.target)) continue; // https:, mailto: ...: not a file in this repository
    const hash = link.target.indexOf('#');
    const rawPath = hash < 0 ? link.target : link.target.slice(0, hash);
    const anchor = hash < 0 ? null : decodeURIComponent(link.target.slice(hash + 1));
    const resolved = rawPath === '' ? file : path.resolve(path.dirname(file), decodeURIComponent(rawPath));
    if (path.relative(ROOT, resolved).startsWith('..')) {
      problems.push(`${where(link)}: points outside the repository`);
      continue;
    }
    if (rawPath !== '' && !existsSync(resolved)) {
      problems.push(`${where(link)}: no such file`);
      continue;
    }
    if (anchor === null || anchor === '') continue;
    if (!resolved.endsWith('.md') || (resolved !== file && statSync(resolved).isDirectory())) {
      problems.push(`${where(link)}: an anchor into a file that has no Markdown headings`);
      continue;
    }
    const text = resolved === file ? markdown : readFileSync(resolved, 'utf8');
    if (!anchors(text).has(anchor)) problems.push(`${where(link)}: no heading with anchor #${anchor}`);
  }
  return problems;
}

function docFiles(): string[] {
  const docs = path.join(ROOT, 'docs');
  return [
    path.join(ROOT, 'README.md'),
    ...readdirSync(docs)
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => path.join(docs, f)),
  ];
}

describe('documentation links', () => {
  it('every relative link in README.md and docs/*.md reaches an existing file and heading', () => {
    const files = docFiles();
    assert.ok(files.length > 1, 'docs/ holds Markdown guides');
    let checked = 0;
    const problems: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      checked += findLinks(text).filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l.target)).length;
      problems.push(...checkLinks(file, text));
    }
    assert.ok(checked > 0, 'the documents contain relative links');
    assert.deepEqual(problems, []);
  });

  it('README.md links every guide in docs/', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const linked = new Set(findLinks(readme).map((l) => l.target.split('#')[0]));
    const guides = readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    assert.deepEqual(
      guides.filter((g) => !linked.has(`docs/${g}`)),
      [],
    );
  });

  it(`README.md stays a front door of at most ${README_MAX_BYTES} bytes`, () => {
    const size = statSync(path.join(ROOT, 'README.md')).size;
    assert.ok(size <= README_MAX_BYTES, `README.md is ${size} bytes`);
  });

  it('reports a missing file, a missing anchor and a link out of the repository', () => {
    const file = path.join(ROOT, 'docs', 'example.md');
    const md = [
      '# Title',
      '[ok](../README.md) [self](#title) [gone](missing.md) [bad anchor](../README.md#no-such-heading)',
      '[out](../../elsewhere.md) [web](https://example.com/x.md)',
    ].join('\n');
    assert.deepEqual(checkLinks(file, md), [
      'docs/example.md:2: missing.md: no such file',
      'docs/example.md:2: ../README.md#no-such-heading: no heading with anchor #no-such-heading',
      'docs/example.md:3: ../../elsewhere.md: points outside the repository',
    ]);
  });

  it('ignores links inside code blocks and code spans', () => {
    const md = ['`[a](nowhere.md)`', '```', '[b](nowhere.md)', '# not a heading', '```', '[c](there.md)'].join('\n');
    assert.deepEqual(findLinks(md), [{ target: 'there.md', line: 6 }]);
    assert.deepEqual([...anchors(md)], []);
  });

  it('makes anchors the way GitHub does', () => {
    assert.equal(slug('`--json` event schema (schema version 1)'), '--json-event-schema-schema-version-1');
    assert.equal(slug('2. Tap: `connect --inspect`, `serve --inspect`'), '2-tap-connect---inspect-serve---inspect');
    assert.equal(slug('The data path: profile and changes'), 'the-data-path-profile-and-changes');
    assert.equal(slug('Links [in](x.md) headings'), 'links-in-headings');
    assert.deepEqual([...anchors('# Usage\n## Usage\n## Usage')], ['usage', 'usage-1', 'usage-2']);
  });
});
