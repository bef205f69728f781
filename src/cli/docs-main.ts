import { readFileSync, writeFileSync } from 'node:fs';
import { DOCS_BEGIN, DOCS_END, withOptionsReference } from './options/docs.js';
import { DOCUMENTED_SCHEMAS } from './schemas/all.js';

// Entry of `npm run docs:options`: rewrites the options reference in each command's guide (docs/<command>.md) from
// its schema. A guide without the markers gets an "Options reference" section at its end.

for (const schema of DOCUMENTED_SCHEMAS) {
  const path = `docs/${schema.command}.md`;
  const text = readFileSync(path, 'utf8');
  const base = text.includes(DOCS_BEGIN) ? text : `${text.trimEnd()}\n\n## Options reference\n\n${DOCS_BEGIN}\n${DOCS_END}\n`;
  const next = withOptionsReference(base, schema)!;
  if (next !== text) {
    writeFileSync(path, next);
    process.stdout.write(`updated ${path}\n`);
  }
}
