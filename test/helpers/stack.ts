import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TunnelClient, type TunnelClientOptions } from '../../src/tunnel/client.js';
import { buildTransport } from '../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer, type TunnelServerOptions } from '../../src/tunnel/server/tunnel-server.js';
import type { Transport } from '../../src/tunnel/transport/types.js';
import { startUdpEcho, type UdpEcho } from './net.js';

/** A self-signed certificate for 127.0.0.1, ::1 and localhost, made at test time (no keys are committed). */
export interface TestCert {
  cert: Buffer;
  key: Buffer;
}

let cachedCert: TestCert | null = null;

/** Generates (once per process) a throwaway EC certificate with openssl. */
export function testCert(): TestCert {
  if (cachedCert) return cachedCert;
  const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-cert-'));
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
    cachedCert = { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) };
    return cachedCert;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Echo target + serve + connect, all in this process on loopback with port 0. */
export interface Stack {
  echo: UdpEcho;
  server: TunnelServer;
  client: TunnelClient;
  transport: Transport;
  host: string;
  proxyPort: number;
  localPort: number;
  close(): Promise<void>;
}

/** Options of startStack. */
export interface StackOptions {
  host?: string;
  tls?: boolean;
  server?: Partial<TunnelServerOptions>;
  client?: Partial<TunnelClientOptions>;
  /** Target port override (e.g. a port with nothing listening). */
  targetPort?: number;
  targetHost?: string;
}

/** Starts a whole tunnel on loopback. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const host = opts.host ?? '127.0.0.1';
  const echo = await startUdpEcho(host);
  const cert = opts.tls ? testCert() : null;
  const server = new TunnelServer({
    host,
    port: 0,
    policy: new TargetPolicy(),
    ...(cert ? { tls: { cert: cert.cert, key: cert.key } } : {}),
    ...opts.server,
  });
  const addr = await server.listen();
  const proxyHost = host.includes(':') ? `[${host}]` : host;
  const transport = buildTransport({
    proxy: `${cert ? 'https' : 'http'}://${proxyHost}:${addr.port}`,
    target: { host: opts.targetHost ?? host, port: opts.targetPort ?? echo.port },
    tls: cert ? { ca: cert.cert } : {},
    connectTimeoutMs: 5000,
  });
  const client = new TunnelClient({ host, port: 0, transport, ...opts.client });
  const local = await client.start();
  return {
    echo,
    server,
    client,
    transport,
    host,
    proxyPort: addr.port,
    localPort: local.port,
    async close() {
      await client.close();
      await server.close();
      await echo.close();
    },
  };
}
