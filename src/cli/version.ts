import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The package version, read from package.json next to the compiled code (dist/src/cli -> package root). */
export function packageVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    cached = pkg.version;
  }
  return cached;
}
