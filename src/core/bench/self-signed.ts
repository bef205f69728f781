import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, UdpTunnelError } from '../errors.js';

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
 * Makes a one-day self-signed EC certificate for localhost, 127.0.0.1 and ::1 with the `openssl` command, in a
 * private temporary directory. Nothing is kept: the bench removes it when done.
 */
export async function makeThrowawayCert(): Promise<ThrowawayCert> {
  const dir = await mkdtemp(join(tmpdir(), 'udp-tunnel-bench-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const dispose = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        'openssl',
        [
          'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
          '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
          '-addext', 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost',
        ],
        { timeout: 10_000 },
        (err) => (err ? reject(err) : resolve()),
      );
    });
    return { certPath, keyPath, cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8'), dispose };
  } catch (err) {
    await dispose();
    throw new UdpTunnelError(
      ErrorCodes.IO,
      `bench --tls needs the openssl command to make a throwaway certificate: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
}
