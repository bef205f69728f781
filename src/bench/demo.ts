import dgram from 'node:dgram';
import { formatHostPort } from '../tunnel/address.js';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { startEchoServer, type EchoServer } from './echo-server.js';
import { LatencyRecorder, type LatencySummary } from './stats.js';
import { TunnelClient, type ClientCounters } from '../tunnel/client.js';
import { buildTransport } from '../tunnel/client-config.js';
import { TargetPolicy } from '../tunnel/policy.js';
import { TunnelServer, type ServerCounters } from '../tunnel/server/tunnel-server.js';

/** A complete local tunnel: UDP echo target, serve and connect, all on loopback with OS-chosen ports. */
export interface DemoStack {
  echo: EchoServer;
  server: TunnelServer;
  client: TunnelClient;
  proxyUrl: string;
  local: AddressInfo;
  target: { host: string; port: number };
  close(): Promise<void>;
}

/** Starts echo + serve (h2c) + connect on `host` (127.0.0.1 or ::1). */
export async function startDemoStack(host = '127.0.0.1'): Promise<DemoStack> {
  const echo = await startEchoServer({ host });
  const server = new TunnelServer({ host, port: 0, policy: new TargetPolicy() });
  const proxy = await server.listen();
  const proxyUrl = `http://${formatHostPort(host, proxy.port)}`;
  const target = { host, port: echo.address().port };
  const client = new TunnelClient({ host, port: 0, transport: buildTransport({ proxy: proxyUrl, target }) });
  const local = await client.start();
  return {
    echo,
    server,
    client,
    proxyUrl,
    local,
    target,
    async close() {
      await client.close();
      await server.close();
      await echo.close();
    },
  };
}

/** Per-peer outcome of demo traffic. */
export interface DemoPeerResult {
  peer: string;
  sent: number;
  received: number;
  /** Replies whose bytes differ from what was sent (must be 0). */
  corrupted: number;
  rttUs: LatencySummary;
}

/** Result of runDemoTraffic. */
export interface DemoResult {
  peers: DemoPeerResult[];
  elapsedMs: number;
  client: ClientCounters;
  server: ServerCounters;
}

export { DEMO_TRAFFIC_DEFAULTS } from './defaults.js';
import { DEMO_TRAFFIC_DEFAULTS } from './defaults.js';

/**
 * Sends `count` datagrams of `size` bytes from each of `peers` local UDP sockets through the tunnel, one at a time
 * per peer (ping-pong), and checks every echo byte for byte.
 */
export async function runDemoTraffic(
  stack: DemoStack,
  options: { peers?: number; count?: number; size?: number; timeoutMs?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<DemoResult> {
  const opts = { ...DEMO_TRAFFIC_DEFAULTS, ...options };
  const start = performance.now();
  const total = opts.peers * opts.count;
  let done = 0;
  const host = stack.local.address;
  const runPeer = async (index: number): Promise<DemoPeerResult> => {
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((r) => socket.bind(0, host, r));
    const rec = new LatencyRecorder();
    const result: DemoPeerResult = { peer: formatHostPort(host, socket.address().port), sent: 0, received: 0, corrupted: 0, rttUs: rec.summary() };
    try {
      for (let i = 0; i < opts.count; i++) {
        const payload = Buffer.alloc(opts.size, (index * 31 + i) & 0xff);
        payload.write(`${index}:${i}`.slice(0, opts.size));
        const t0 = performance.now();
        const reply = await new Promise<Buffer | null>((resolve) => {
          const timer = setTimeout(() => {
            socket.off('message', onMsg);
            resolve(null);
          }, opts.timeoutMs);
          const onMsg = (msg: Buffer): void => {
            clearTimeout(timer);
            socket.off('message', onMsg);
            resolve(msg);
          };
          socket.on('message', onMsg);
          socket.send(payload, stack.local.port, host);
        });
        result.sent++;
        done++;
        if (reply) {
          result.received++;
          rec.record((performance.now() - t0) * 1000);
          if (!reply.equals(payload)) result.corrupted++;
        }
        opts.onProgress?.(done, total);
      }
    } finally {
      await new Promise<void>((r) => socket.close(() => r()));
    }
    result.rttUs = rec.summary();
    return result;
  };
  const peers = await Promise.all(Array.from({ length: opts.peers }, (_, i) => runPeer(i)));
  return { peers, elapsedMs: performance.now() - start, client: { ...stack.client.counters }, server: { ...stack.server.counters } };
}
