import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { startCli } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho } from '../helpers/net.js';

// NSS key log format: LABEL <client random, 32 bytes hex> <secret hex>.
const LINE = /^([A-Z_0-9]+) ([0-9a-f]{64}) ([0-9a-f]+)$/;

/** The client randoms of a key log file, after checking every line has the NSS format. */
function clientRandoms(path: string): { labels: Set<string>; randoms: Set<string> } {
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l !== '');
  assert.ok(lines.length > 0, `${path} is empty`);
  const labels = new Set<string>();
  const randoms = new Set<string>();
  for (const l of lines) {
    const m = LINE.exec(l);
    assert.ok(m, `not a key log line: ${l}`);
    labels.add(m[1]!);
    randoms.add(m[2]!);
  }
  return { labels, randoms };
}

describe('TLS key log (--keylog, SSLKEYLOGFILE)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-keylog-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const http of ['2', '1.1'] as const) {
    it(`serve --keylog and connect ${http === '2' ? '--keylog' : 'with SSLKEYLOGFILE'} (HTTP/${http}) log the same TLS sessions`, async () => {
      const serverLog = join(dir, `server-${http}.keys`);
      const clientLog = join(dir, `client-${http}.keys`);
      const echo = await startUdpEcho();
      const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--self-signed', '--keylog', serverLog, '--json']);
      const sl = await serve.waitForEvent('listening');
      const pin = String((sl['tls'] as { pin: string }).pin);
      const args = ['connect', '-l', '127.0.0.1:0', '-p', `https://127.0.0.1:${sl['port']}`, '--pin', pin, '-t', `127.0.0.1:${echo.port}`, '--http', http, '--json'];
      // HTTP/2 names the file with the flag, HTTP/1.1 through the environment only.
      const connect = http === '2' ? startCli([...args, '--keylog', clientLog]) : startCli(args, { env: { SSLKEYLOGFILE: clientLog } });
      const cl = await connect.waitForEvent('listening');
      const peer = await openUdpPeer();
      await peer.send('keylog', Number(cl['port']), '127.0.0.1');
      assert.equal(String((await peer.waitFor(1, 10_000))[0]), 'keylog');
      assert.equal(await connect.stop('SIGINT'), 0);
      assert.equal(await serve.stop('SIGINT'), 0);
      await peer.close();
      await echo.close();

      const server = clientRandoms(serverLog);
      const client = clientRandoms(clientLog);
      // TLS 1.3 (RFC 8446 §7.1) secrets as Wireshark reads them.
      for (const label of ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0']) {
        assert.ok(client.labels.has(label), `client log lacks ${label}`);
        assert.ok(server.labels.has(label), `server log lacks ${label}`);
      }
      assert.ok([...client.randoms].some((r) => server.randoms.has(r)), 'client and server logged different TLS sessions');
      assert.equal(statSync(clientLog).mode & 0o777, 0o600);
      assert.equal(statSync(serverLog).mode & 0o777, 0o600);
    });
  }
});
