import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InspectRelay } from '../../../src/inspect/relay.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate } from '../../../src/tunnel/tls-cert.js';

/** Client randoms (the second field of an NSS key log line) of the lines given. */
function randoms(lines: Buffer[]): Set<string> {
  const out = new Set<string>();
  for (const l of lines) {
    const m = /^[A-Z_0-9]+ ([0-9a-f]{64}) [0-9a-f]+\n?$/.exec(l.toString('latin1'));
    assert.ok(m, `not a key log line: ${l.toString('latin1')}`);
    out.add(m[1]!);
  }
  return out;
}

describe('inspect relay: onKeylog covers client and upstream TLS connections', () => {
  let server: TunnelServer;
  let relay: InspectRelay;
  let relayPort: number;
  const serverLines: Buffer[] = [];
  const relayLines: Buffer[] = [];

  before(async () => {
    const cert = await generateCertificate({});
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: cert.cert, key: cert.key, onKeylog: (l) => serverLines.push(l) } });
    const sp = (await server.listen()).port;
    relay = new InspectRelay({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: cert.cert, key: cert.key },
      upstream: `https://127.0.0.1:${sp}`,
      upstreamTls: { insecure: true },
      onEvent: () => {},
      onKeylog: (l) => relayLines.push(l),
    });
    relayPort = (await relay.listen()).port;
  });

  after(async () => {
    await relay.close();
    await server.close();
  });

  for (const http of ['2', '1.1'] as const) {
    it(`HTTP/${http}: the relay logs the client's session and its own session with serve`, async () => {
      const clientLines: Buffer[] = [];
      const transport = buildTransport({
        proxy: `https://127.0.0.1:${relayPort}`,
        http,
        target: { host: '127.0.0.1', port: 9 },
        tls: { insecure: true, onKeylog: (l) => clientLines.push(l) },
        connectTimeoutMs: 10_000,
      });
      try {
        const handle = await transport.open('s1', new AbortController().signal);
        handle.abort('close');
      } finally {
        await transport.close();
      }
      const client = randoms(clientLines);
      const relayed = randoms(relayLines);
      const served = randoms(serverLines);
      assert.ok(client.size > 0, 'client logged no secrets');
      // Client -> relay: both ends logged it.
      assert.ok([...client].every((r) => relayed.has(r)), 'the relay lacks the client connection');
      // Relay -> serve: a session of the relay's that serve logged too and the client did not take part in.
      assert.ok([...served].some((r) => relayed.has(r) && !client.has(r)), 'the relay lacks its upstream connection');
    });
  }
});
