import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCertificate } from '../tunnel/tls-cert.js';

/** A throwaway certificate and key on disk (for `serve --cert/--key` and `connect --ca`) and in memory. */
export interface ThrowawayCert {
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
  /** Deletes the files. */
  dispose(): Promise<void>;
}

/**
 * Makes a one-day self-signed certificate for localhost, 127.0.0.1 and ::1 in a private temporary directory, for
 * tunnel processes that take files. Nothing is kept: the bench removes it when done.
 */
export async function makeThrowawayCert(): Promise<ThrowawayCert> {
  const dir = await mkdtemp(join(tmpdir(), 'udp-tunnel-bench-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const dispose = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const { cert, key } = await generateCertificate({ days: 1 });
    await writeFile(certPath, cert);
    await writeFile(keyPath, key, { mode: 0o600 });
    return { certPath, keyPath, cert, key, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}
