import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, startCli } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../helpers/net.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-forwards-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('connect -L: several forwards in one connect', () => {
  it('--json: one listening event per forward with its real port and target; datagrams pass through both over one connection', async () => {
    const echoA = await startUdpEcho();
    const echoB = await startUdpEcho();
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json']);
    const connectArgs = (port: unknown): string[] => [
      'connect',
      '-p',
      `http://127.0.0.1:${port}`,
      '-L',
      `127.0.0.1:0:127.0.0.1:${echoA.port}`,
      '-L',
      `0:127.0.0.1:${echoB.port}`,
      '--json',
      // The start-up proxy check opens a connection of its own; only the tunnels' connections are counted here.
      '--no-proxy-check',
    ];
    const peer = await openUdpPeer();
    let connect: ReturnType<typeof startCli> | undefined;
    try {
      const sl = await serve.waitForEvent('listening');
      connect = startCli(connectArgs(sl['port']));
      const c = connect;
      await waitUntil(() => c.lines.filter((l) => l['event'] === 'listening').length === 2, 10_000, 'two listening events');
      const listening = c.lines.filter((l) => l['event'] === 'listening');
      assert.deepEqual(listening.map((l) => l['forward']), [0, 1]);
      assert.deepEqual(listening.map((l) => l['target']), [`127.0.0.1:${echoA.port}`, `127.0.0.1:${echoB.port}`]);
      const ports = listening.map((l) => Number(l['port']));
      for (const p of ports) assert.ok(p > 0, 'a real port, not 0');
      assert.notEqual(ports[0], ports[1]);
      await peer.send('to A', ports[0]!, '127.0.0.1');
      await peer.send('to B', ports[1]!, '127.0.0.1');
      const got = await peer.waitFor(2, 10_000);
      assert.deepEqual(got.map(String).sort(), ['to A', 'to B']);
      assert.equal(echoA.received, 1);
      assert.equal(echoB.received, 1);
      await waitUntil(() => c.lines.filter((l) => l['event'] === 'session-ready').length === 2, 10_000, 'two sessions ready');
      const ready = c.lines.filter((l) => l['event'] === 'session-ready');
      assert.deepEqual(ready.map((l) => l['forward']).sort(), [0, 1]);
      assert.deepEqual(ready.map((l) => l['id']).sort(), ['f0c1', 'f1c1']);
      assert.equal(await c.stop('SIGINT'), 0);
      const shutdown = c.lines.find((l) => l['event'] === 'shutdown') as { counters: Record<string, number>; forwards: Record<string, number>[] };
      assert.equal(shutdown.counters['downstream_sess_total'], 2);
      assert.deepEqual(shutdown.forwards.map((f) => f['downstream_sess_tx_datagrams']), [1, 1]);
      assert.equal(await serve.stop('SIGTERM'), 0);
      const served = serve.lines.find((l) => l['event'] === 'shutdown') as { counters: Record<string, number> };
      assert.equal(served.counters['connectionsH2'], 1, 'both forwards shared one HTTP/2 connection');
      assert.equal(served.counters['sessionsTotal'], 2);
    } finally {
      await connect?.stop('SIGKILL');
      await serve.stop('SIGKILL');
      await peer.close();
      await echoA.close();
      await echoB.close();
    }
  });

  it('human output: one listening line per forward', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json']);
    try {
      const sl = await serve.waitForEvent('listening');
      const c = startCli(['connect', '-p', `http://127.0.0.1:${sl['port']}`, '-L', '0:127.0.0.1:53', '-L', '[::1]:0:[::1]:54', '--no-proxy-check']);
      await waitUntil(() => (c.stderr().match(/listening on udp/g) ?? []).length === 2, 10_000, 'two listening lines');
      assert.equal(await c.stop('SIGINT'), 0);
      assert.match(c.stderr(), /listening on udp 127\.0\.0\.1:\d+ -> http:\/\/127\.0\.0\.1:\d+ -> 127\.0\.0\.1:53 \[h2\]/);
      assert.match(c.stderr(), /listening on udp \[::1\]:\d+ -> http:\/\/127\.0\.0\.1:\d+ -> \[::1\]:54 \[h2\]/);
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  const usage: { args: string[]; why: RegExp }[] = [
    { args: ['-L', '5353:127.0.0.1:53', '--target', '127.0.0.1:53'], why: /--target does not apply with -L: .*drop --target/ },
    { args: ['-L', '5353:127.0.0.1:53', '--local', '127.0.0.1:1'], why: /--local does not apply with -L/ },
    { args: ['-L', '99999:127.0.0.1:53'], why: /-L '99999:127\.0\.0\.1:53': local port '99999' must be 0\.\.65535/ },
    { args: ['-L', '5353:[fe80::1%eth0]:53'], why: /zone identifiers are not supported/ },
    { args: ['-L', '5353:127.0.0.1:53', '--mode', 'post'], why: /-L names a target, which --mode post does not use/ },
    { args: ['-t', '127.0.0.1:53', '-H', 'original-dst-port: %DOWNSTREAM_PORT%'], why: /-H 'original-dst-port: %DOWNSTREAM_PORT%': unknown %DOWNSTREAM_PORT%/ },
  ];
  for (const u of usage) {
    it(`exit 2: ${u.args.join(' ')}`, async () => {
      const r = await runCli(['connect', '-p', 'http://127.0.0.1:1', ...u.args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, u.why);
    });
  }
});

describe('connect with forwards: in the config file', () => {
  it('per-forward headers and header templates arrive at the proxy; each forward reaches its own target path', async () => {
    const requests: http2.IncomingHttpHeaders[] = [];
    const proxy = http2.createServer({ settings: { enableConnectProtocol: true } });
    const sessions = new Set<http2.ServerHttp2Session>();
    proxy.on('session', (s) => {
      sessions.add(s);
      s.on('close', () => sessions.delete(s));
    });
    proxy.on('stream', (stream, headers) => {
      requests.push(headers);
      stream.on('error', () => {});
      stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    const file = join(dir, 'forwards.yaml');
    writeFileSync(
      file,
      [
        `proxy: http://127.0.0.1:${port}`,
        "header: ['original-dst-port: %DOWNSTREAM_LOCAL_PORT%', 'x-tenant: blue']",
        'forwards:',
        '  - local: 127.0.0.1:0',
        '    target: 127.0.0.1:53',
        '  - local: 0',
        '    target: 127.0.0.1:54',
        "    header: ['x-tenant: green', 'x-peer: %DOWNSTREAM_REMOTE_ADDRESS%', 'x-session: %SESSION_ID%']",
        '    idle-timeout: 5m',
        '',
      ].join('\n'),
    );
    const c = startCli(['connect', '--config', file, '--json', '--no-proxy-check']);
    const peer = await openUdpPeer();
    try {
      await waitUntil(() => c.lines.filter((l) => l['event'] === 'listening').length === 2, 10_000, 'two listening events');
      const ports = c.lines.filter((l) => l['event'] === 'listening').map((l) => Number(l['port']));
      await peer.send('a', ports[0]!, '127.0.0.1');
      await waitUntil(() => requests.length === 1, 10_000, 'first request');
      await peer.send('b', ports[1]!, '127.0.0.1');
      await waitUntil(() => requests.length === 2, 10_000, 'second request');
      const [ra, rb] = requests;
      assert.equal(ra![':path'], '/.well-known/masque/udp/127.0.0.1/53/');
      assert.equal(rb![':path'], '/.well-known/masque/udp/127.0.0.1/54/');
      assert.equal(ra!['original-dst-port'], String(ports[0]));
      assert.equal(rb!['original-dst-port'], String(ports[1]));
      assert.equal(ra!['x-tenant'], 'blue');
      assert.equal(rb!['x-tenant'], 'green');
      assert.equal(ra!['x-peer'], undefined);
      assert.equal(rb!['x-peer'], `127.0.0.1:${peer.port}`);
      assert.equal(rb!['x-session'], 'f1c1');
      assert.equal(await c.stop('SIGINT'), 0);
    } finally {
      await c.stop('SIGKILL');
      await peer.close();
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('exit 2 naming the forward index for an unknown key, with a suggestion', async () => {
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, 'proxy: http://127.0.0.1:1\nforwards:\n  - { local: 0, target: 127.0.0.1:53 }\n  - { local: 0, target: 127.0.0.1:54, idle-timout: 5s }\n');
    const r = await runCli(['connect', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /forwards\[1\]: unknown key 'idle-timout'; did you mean idle-timeout\?/);
  });

  it('exit 2 for forwards: together with --target, naming both', async () => {
    const file = join(dir, 'both.yaml');
    writeFileSync(file, 'proxy: http://127.0.0.1:1\nforwards:\n  - { local: 0, target: 127.0.0.1:53 }\n');
    const r = await runCli(['connect', '--config', file, '--target', '127.0.0.1:53']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--target does not apply with forwards: in the config file/);
  });
});
