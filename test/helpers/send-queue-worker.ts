import { Buffer } from 'node:buffer';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { formatHostPort } from '../../src/tunnel/address.js';
import { TunnelClient, type ClientSessionStats } from '../../src/tunnel/client.js';
import { encodeDatagramCapsule } from '../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer, type ServerSessionStats } from '../../src/tunnel/server/tunnel-server.js';
import { openRawTunnel, startScriptedUpstream } from './h2-peer.js';
import { openUdpPeer, waitUntil } from './net.js';

/** workerData of this helper: which relay socket to fill, on which loopback address. */
export interface SendQueueWorkerData {
  side: 'server' | 'client';
  host: string;
  /** maxUdpSendQueue of the relay under test. */
  limit: number;
  /** Datagrams offered in one burst (one HTTP/2 write). */
  count: number;
}

/** What the worker reports once every offered datagram was either received by the UDP peer or counted as dropped. */
export interface SendQueueResult {
  /** Datagrams the UDP peer (the server's target, or the client's local peer) received. */
  received: number;
  /** Relay-wide drop counter: server `limits.udpSendQueue`, client `datagrams_dropped`. */
  wideDrops: number;
  /** The session's stats when it closed. */
  stats: ServerSessionStats | ClientSessionStats;
}

function burst(count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, (_, i) => encodeDatagramCapsule(Buffer.from(`datagram ${String(i).padStart(4, '0')}`))));
}

/** The server side: a raw HTTP/2 tunnel sends the burst; the session's connected UDP socket relays it to a sink. */
async function runServer(d: SendQueueWorkerData): Promise<SendQueueResult> {
  const sink = await openUdpPeer(d.host);
  const server = new TunnelServer({ host: d.host, port: 0, policy: new TargetPolicy(), maxUdpSendQueue: d.limit });
  const closed = new Promise<ServerSessionStats>((resolve) => server.once('session-close', resolve));
  const addr = await server.listen();
  const tunnel = await openRawTunnel(`http://${formatHostPort(d.host, addr.port)}`, `/.well-known/masque/udp/${encodeURIComponent(d.host)}/${sink.port}/`);
  try {
    const res = await tunnel.response;
    if (String(res.headers[':status']) !== '200') throw new Error(`tunnel refused: ${String(res.headers[':status'])}`);
    tunnel.stream.write(burst(d.count));
    await waitUntil(() => sink.messages.length + server.counters.limits.udpSendQueue >= d.count, 5000, 'every datagram sent or dropped');
    // Nothing more may arrive: a late datagram would break sent + dropped = offered.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await tunnel.close();
    const stats = await closed;
    return { received: sink.messages.length, wideDrops: server.counters.limits.udpSendQueue, stats };
  } finally {
    await tunnel.close();
    await server.close();
    await sink.close();
  }
}

/** The client side: a scripted upstream answers the first capsule with the burst; the client relays it to the local peer. */
async function runClient(d: SendQueueWorkerData): Promise<SendQueueResult> {
  const data = burst(d.count);
  const upstream = await startScriptedUpstream({
    respond: (stream) => {
      stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
      // Sent once the client's first datagram arrives, so its channel already reads the stream.
      stream.once('data', () => stream.write(data));
    },
  });
  const client = new TunnelClient({
    host: d.host,
    port: 0,
    transport: buildTransport({ proxy: `http://127.0.0.1:${upstream.port}`, target: { host: '127.0.0.1', port: 9 } }),
    maxUdpSendQueue: d.limit,
  });
  const closed = new Promise<ClientSessionStats>((resolve) => client.once('session-close', resolve));
  const local = await client.start();
  const peer = await openUdpPeer(d.host);
  try {
    await peer.send('hello', local.port, d.host);
    await waitUntil(() => peer.messages.length + client.counters.datagrams_dropped >= d.count, 5000, 'every datagram sent or dropped');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await client.close();
    const stats = await closed;
    return { received: peer.messages.length, wideDrops: client.counters.datagrams_dropped, stats };
  } finally {
    await client.close();
    await upstream.close();
    await peer.close();
  }
}

// Runs under --test-udp-no-try-send (a worker's execArgv): every UDP send then waits in libuv's queue until the
// event loop completes it, as it does when the kernel send buffer is full. Loopback never fills that buffer.
// Run directly (main thread, as `node --test dist/test/` does with every file under test/) it does nothing.
const port = parentPort;
if (!isMainThread && port !== null) {
  const d = workerData as SendQueueWorkerData;
  try {
    port.postMessage({ ok: true, result: await (d.side === 'server' ? runServer(d) : runClient(d)) });
  } catch (err) {
    port.postMessage({ ok: false, error: String((err as Error)?.stack ?? err) });
  }
}
