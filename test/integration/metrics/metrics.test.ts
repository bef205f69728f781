import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import {
  clusterMetrics,
  connectRegistry,
  METRICS_LIMITS,
  parseMetricsListen,
  ProxyReadiness,
  serveRegistry,
  serveRegistryOver,
  startMetricsHttpServer,
  type MetricsHttpServer,
} from '../../../src/cli/metrics/index.js';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { probeProxy } from '../../../src/tunnel/proxy-probe.js';
import { buildTargetPolicy } from '../../../src/tunnel/server-config.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { httpGet, sample, scrapeUntil } from '../../helpers/metrics.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../../helpers/net.js';
import { startStack } from '../../helpers/stack.js';

const common = { version: 'test', processMetrics: false } as const;

describe('metrics listener', () => {
  it('parses --metrics: a bare port listens on 127.0.0.1, HOST:PORT and [IPv6]:PORT as given', () => {
    assert.deepEqual(parseMetricsListen('9100'), { host: '127.0.0.1', port: 9100 });
    assert.deepEqual(parseMetricsListen('0.0.0.0:9100'), { host: '0.0.0.0', port: 9100 });
    assert.deepEqual(parseMetricsListen('[::1]:0'), { host: '::1', port: 0 });
    assert.throws(() => parseMetricsListen('127.0.0.1:99999'), /--metrics/);
  });

  it('serves /metrics, /healthz and /readyz to GET and HEAD; 404 elsewhere, 405 for POST, 431 for a huge head', async () => {
    let why: string | null = 'not listening yet';
    const m = await startMetricsHttpServer({ host: '127.0.0.1', port: 0, metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'x 1\n' }), notReady: () => why });
    try {
      assert.equal(m.exposed, false);
      const metrics = await httpGet(`${m.url}/metrics?name[]=x`);
      assert.equal(metrics.status, 200);
      assert.equal(metrics.body, 'x 1\n');
      assert.equal(metrics.headers['content-type'], 'text/plain; version=0.0.4');
      const head = await httpGet(`${m.url}/metrics`, 'HEAD');
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
      assert.equal((await httpGet(`${m.url}/healthz`)).status, 200);
      const notReady = await httpGet(`${m.url}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, /not listening yet/);
      why = null;
      assert.equal((await httpGet(`${m.url}/readyz`)).status, 200);
      assert.equal((await httpGet(`${m.url}/nope`)).status, 404);
      const post = await httpGet(`${m.url}/metrics`, 'POST');
      assert.equal(post.status, 405);
      assert.equal(post.headers['allow'], 'GET, HEAD');
      const huge = await httpGet(`${m.url}/metrics`, 'GET', { 'x-big': 'a'.repeat(METRICS_LIMITS.maxHeaderSize + 1) });
      assert.equal(huge.status, 431);
    } finally {
      await m.close();
    }
  });

  it('a failing exposition answers 500, and the listener keeps serving', async () => {
    const m = await startMetricsHttpServer({ host: '127.0.0.1', port: 0, metrics: () => Promise.reject(new Error('worker timed out')), notReady: () => null });
    try {
      const r = await httpGet(`${m.url}/metrics`);
      assert.equal(r.status, 500);
      assert.match(r.body, /worker timed out/);
      assert.equal((await httpGet(`${m.url}/healthz`)).status, 200);
    } finally {
      await m.close();
    }
  });

  it(`closes connections beyond ${METRICS_LIMITS.maxConnections} on accept`, async () => {
    const m = await startMetricsHttpServer({ host: '127.0.0.1', port: 0, metrics: async () => ({ contentType: 'text/plain', body: '' }), notReady: () => null });
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < METRICS_LIMITS.maxConnections; i++) {
        const s = net.connect(m.address.port, '127.0.0.1');
        await once(s, 'connect');
        held.push(s);
      }
      // Every held connection is accepted once one of them got an answer; the server counts them on accept.
      held[0]!.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await once(held[0]!, 'data');
      const extra = net.connect(m.address.port, '127.0.0.1');
      extra.on('error', () => {});
      let answered = false;
      extra.on('data', () => (answered = true));
      extra.once('connect', () => extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
      await once(extra, 'close');
      assert.equal(answered, false);
    } finally {
      for (const s of held) s.destroy();
      await m.close();
    }
  });
});

describe('serve and connect metrics', () => {
  it('match the library counters: sessions, datagrams and bytes both ways, live and after the sessions closed', async () => {
    const stack = await startStack();
    let serveHttp: MetricsHttpServer | undefined;
    let connectHttp: MetricsHttpServer | undefined;
    const peer = await openUdpPeer();
    try {
      const sreg = serveRegistry(stack.server, { ...common, command: 'serve', notReady: () => null });
      serveHttp = await serveRegistryOver(sreg, { host: '127.0.0.1', port: 0 }, () => null);
      const creg = connectRegistry(stack.client, { ...common, command: 'connect', notReady: () => null, proxy: 'http://127.0.0.1' });
      connectHttp = await serveRegistryOver(creg, { host: '127.0.0.1', port: 0 }, () => null);
      const n = 7;
      for (let i = 0; i < n; i++) await peer.send(Buffer.alloc(100 + i), stack.localPort, '127.0.0.1');
      await peer.waitFor(n);
      const bytes = 7 * 100 + 21;
      const s = await scrapeUntil(`${serveHttp.url}/metrics`, (t) => sample(t, 'udp_tunnel_downstream_sess_tx_datagrams') === n, 10_000, 'serve tx');
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_total'), 1);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_active'), 1);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_rx_datagrams'), n);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_rx_bytes'), bytes);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_tx_bytes'), bytes);
      assert.equal(sample(s, 'udp_tunnel_downstream_cx_total'), stack.server.counters.connections);
      assert.equal(sample(s, 'udp_tunnel_downstream_cx_http2_total'), 1);
      assert.equal(sample(s, 'udp_tunnel_downstream_rq_total'), stack.server.counters.requests);
      assert.equal(sample(s, 'udp_tunnel_info', { command: 'serve' }), 1);
      assert.equal(sample(s, 'udp_tunnel_ready'), 1);
      const c = (await httpGet(`${connectHttp.url}/metrics`)).body;
      const cc = stack.client.counters;
      for (const name of ['downstream_sess_total', 'downstream_sess_active', 'downstream_sess_rx_datagrams', 'downstream_sess_rx_bytes', 'downstream_sess_tx_datagrams', 'downstream_sess_tx_bytes', 'sess_tunnel_success'] as const) {
        assert.equal(sample(c, `udp_tunnel_${name}`), cc[name], name);
      }
      assert.equal(sample(c, 'udp_tunnel_downstream_sess_rx_datagrams'), n);
      assert.equal(sample(c, 'udp_tunnel_upstream_rq_total', { proxy: 'http://127.0.0.1' }), 1);
      // The sessions end; their traffic stays in the totals.
      await stack.client.close();
      const closed = await scrapeUntil(`${serveHttp.url}/metrics`, (t) => sample(t, 'udp_tunnel_downstream_sess_active') === 0, 10_000, 'serve session close');
      assert.equal(sample(closed, 'udp_tunnel_downstream_sess_rx_datagrams'), n);
      assert.equal(sample(closed, 'udp_tunnel_downstream_sess_tx_bytes'), bytes);
      const cclosed = (await httpGet(`${connectHttp.url}/metrics`)).body;
      assert.equal(sample(cclosed, 'udp_tunnel_downstream_sess_active'), 0);
      assert.equal(sample(cclosed, 'udp_tunnel_downstream_sess_tx_datagrams'), n);
    } finally {
      await peer.close();
      await serveHttp?.close();
      await connectHttp?.close();
      await stack.close();
    }
  });

  it('drops by reason, live: oversize on both sides', async () => {
    // The client accepts 300-byte datagrams, the proxy only 200: a 250-byte one is dropped by the proxy, a 400-byte
    // one by the client.
    const stack = await startStack({ server: { maxDatagram: 200 }, client: { maxDatagram: 300 } });
    const peer = await openUdpPeer();
    try {
      const s = serveRegistry(stack.server, { ...common, command: 'serve', notReady: () => null });
      const c = connectRegistry(stack.client, { ...common, command: 'connect', notReady: () => null, proxy: 'http://127.0.0.1' });
      await peer.send(Buffer.alloc(10), stack.localPort, '127.0.0.1');
      await peer.waitFor(1);
      await peer.send(Buffer.alloc(250), stack.localPort, '127.0.0.1');
      await peer.send(Buffer.alloc(400), stack.localPort, '127.0.0.1');
      await waitUntil(() => stack.server.counters.limits.datagramSize === 1, 10_000, 'proxy drop');
      const st = await s.metrics();
      assert.equal(sample(st, 'udp_tunnel_datagrams_dropped', { reason: 'oversize' }), 1);
      assert.equal(sample(st, 'udp_tunnel_limit_hits', { limit: 'datagram_size' }), 1);
      const ct = await c.metrics();
      assert.equal(sample(ct, 'udp_tunnel_datagrams_dropped', { reason: 'oversize' }), 1);
      assert.equal(sample(ct, 'udp_tunnel_datagrams_dropped', { reason: 'not_ready' }), 0);
      assert.equal(stack.client.activeSessions, 1);
    } finally {
      await peer.close();
      await stack.close();
    }
  });

  it('refused tunnels appear by status and Proxy-Status error type on serve, by error type and code on connect', async () => {
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: buildTargetPolicy(['127.0.0.0/8'], ['127.0.0.2/32'], '127.0.0.1') });
    const addr = await server.listen();
    const transport = buildTransport({ proxy: `http://127.0.0.1:${addr.port}`, target: { host: '127.0.0.2', port: echo.port }, connectTimeoutMs: 5000 });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      const s = serveRegistry(server, { ...common, command: 'serve', notReady: () => null });
      const c = connectRegistry(client, { ...common, command: 'connect', notReady: () => null, proxy: 'http://127.0.0.1' });
      await peer.send('x', local.port, '127.0.0.1');
      await waitUntil(() => client.counters.sess_tunnel_failure === 1, 10_000, 'refusal');
      const st = await s.metrics();
      assert.equal(sample(st, 'udp_tunnel_downstream_rq_refused', { status: '403', error_type: 'destination_ip_prohibited' }), 1);
      const ct = await c.metrics();
      assert.equal(sample(ct, 'udp_tunnel_upstream_rq_failure', { error_type: 'destination_ip_prohibited', code: 'UT_ERR_TUNNEL_REFUSED' }), 1);
      assert.equal(sample(ct, 'udp_tunnel_upstream_rq_total'), 1);
      assert.equal(sample(ct, 'udp_tunnel_sess_tunnel_failure'), 1);
      assert.equal(echo.received, 0);
    } finally {
      await peer.close();
      await client.close();
      await server.close();
      await echo.close();
    }
  });
});

/** A loopback TCP port with nothing listening (bound, read back, closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('connect readiness', () => {
  it('not ready while the proxy is unreachable; probes again with backoff and is ready once it answers', async () => {
    const port = await closedPort();
    const config = { proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: 9 }, connectTimeoutMs: 2000 };
    let probes = 0;
    const readiness = new ProxyReadiness(
      (signal) => {
        probes++;
        return probeProxy(config, { signal });
      },
      { firstMs: 20, maxMs: 100 },
    );
    let server: TunnelServer | undefined;
    try {
      assert.match(readiness.notReady() ?? '', /not been checked/);
      readiness.check();
      await waitUntil(() => probes >= 2, 10_000, 'a second probe');
      assert.match(readiness.notReady() ?? '', /127\.0\.0\.1/);
      assert.equal(readiness.reachable, false);
      server = new TunnelServer({ host: '127.0.0.1', port, policy: buildTargetPolicy([], [], '127.0.0.1') });
      await server.listen();
      await waitUntil(() => readiness.notReady() === null, 10_000, 'ready');
      assert.equal(readiness.reachable, true);
      // A refusal means the proxy answered; an attempt that could not reach it marks it unreachable (and probes).
      readiness.tunnelFailed(new UdpTunnelError(ErrorCodes.TUNNEL_REFUSED, 'refused', { status: 403 }));
      assert.equal(readiness.reachable, true);
      const before = probes;
      readiness.tunnelFailed(new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, 'connection refused'));
      assert.equal(readiness.reachable, false);
      await waitUntil(() => readiness.reachable, 10_000, 'ready again');
      assert.ok(probes > before);
    } finally {
      readiness.stop();
      await server?.close();
    }
  });
});

describe('cluster aggregation', () => {
  const workers: Worker[] = [];
  after(async () => {
    for (const w of workers) {
      if (w.isDead()) continue;
      w.kill();
      await once(w, 'exit');
    }
  });

  it("clusterMetrics() sums the workers' counters: connections spread over two workers add up", async () => {
    cluster.setupPrimary({ exec: fileURLToPath(new URL('../../helpers/metrics-cluster-worker.js', import.meta.url)), silent: false });
    const ports: number[] = [];
    for (let i = 0; i < 2; i++) {
      const w = cluster.fork();
      workers.push(w);
      const [msg] = (await once(w, 'message')) as [{ port: number }];
      ports.push(msg.port);
    }
    // In a cluster, listening on port 0 gives every worker the same port; the primary hands connections round-robin.
    assert.equal(ports[0], ports[1]);
    const scrape = clusterMetrics();
    const k = 6;
    for (let i = 0; i < k; i++) {
      const s = net.connect(ports[0]!, '127.0.0.1');
      await once(s, 'connect');
      s.destroy();
    }
    const deadline = Date.now() + 20_000;
    let text = '';
    for (;;) {
      text = (await scrape()).body;
      if (sample(text, 'udp_tunnel_downstream_cx_total') === k) break;
      if (Date.now() > deadline) assert.fail(`aggregated downstream_cx_total never reached ${k}:\n${text}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Counters add up; info and ready are not multiplied by the number of workers.
    assert.equal(sample(text, 'udp_tunnel_info', { command: 'serve' }), 1);
    assert.equal(sample(text, 'udp_tunnel_ready'), 1);
    assert.equal(sample(text, 'udp_tunnel_downstream_sess_total'), 0);
  });
});
