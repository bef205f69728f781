import { closeSync, openSync, writeSync } from 'node:fs';
import { UsageError } from './errors.js';

/** The `--keylog` flag as parsed. */
export interface KeylogArgs {
  keylog?: string;
}

/** An open key log file: `onKeylog` appends a line, `close()` closes it (once). */
export interface KeylogFile {
  readonly path: string;
  onKeylog(line: Buffer): void;
  close(): void;
}

/**
 * Opens the key log named by `--keylog`, else by SSLKEYLOGFILE, for appending (created with mode 0600: the secrets
 * decrypt every recorded session). Undefined when neither is set.
 */
export function openKeylog(args: KeylogArgs, env: NodeJS.ProcessEnv = process.env): KeylogFile | undefined {
  const path = args.keylog ?? (env['SSLKEYLOGFILE'] || undefined);
  if (path === undefined) return undefined;
  const what = args.keylog !== undefined ? '--keylog' : 'SSLKEYLOGFILE';
  let fd: number;
  try {
    fd = openSync(path, 'a', 0o600);
  } catch (err) {
    throw new UsageError(`${what} ${path}: ${(err as Error).message}`);
  }
  let open = true;
  return {
    path,
    // Synchronous appends keep each line whole and in order; a handful of lines per handshake costs little.
    onKeylog(line: Buffer): void {
      if (!open) return;
      try {
        writeSync(fd, line);
      } catch {
        // A full disk must not end the tunnel; the key log simply stops.
        open = false;
        closeSync(fd);
      }
    },
    close(): void {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}
