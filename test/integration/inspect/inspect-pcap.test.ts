import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { encodeDatagramCapsule } from '../../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { decodeCapture } from '../../../src/inspect/pcap-decode.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho } from '../../helpers/net.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-pcap-'));
let tshark: ChildProcess | null = null;
after(() => {
  if (tshark !== null && tshark.exitCode === null) tshark.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Why a live loopback capture cannot run here, or null when it can. */
function captureUnavailable(): string | null {
  const probe = spawnSync('tshark', ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) return 'tshark is not installed';
  const perm = spawnSync('tshark', ['-D'], { encoding: 'utf8' });
  if (perm.status !== 0 || !/\blo\b/.test(perm.stdout)) return 'tshark cannot list the loopback interface (no capture permission?)';
  return null;
}

/** Starts tshark on lo for one TCP port; resolves once it reports that capturing began. */
function startCapture(port: number, file: string): Promise<ChildProcess> {
  const child = spawn('tshark', ['-i', 'lo', '-f', `tcp port ${port}`, '-w', file, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`tshark did not start: ${err}`)), 15_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/Capturing on/.test(err)) {
        clearTimeout(timer);
        // dumpcap opens the interface right after this line; give it a moment before traffic starts.
        setTimeout(() => resolve(child), 500);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tshark exited with ${code}: ${err}`));
    });
  });
}

const skip = captureUnavailable();

describe('pcap: a live loopback capture of connect -> serve', () => {
  it('decodes the tunnel made during the capture', { skip: skip ?? false }, async (t) => {
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const file = join(dir, 'lo.pcapng');
    try {
      tshark = await startCapture(s.port, file);
    } catch (err) {
      // Listing interfaces may work where capturing is not permitted (no CAP_NET_RAW).
      await server.close();
      await echo.close();
      t.skip(`tshark could not capture on lo: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    const client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: `http://127.0.0.1:${s.port}`, target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 5000 }),
    });
    const local = await client.start();
    const peer = await openUdpPeer();
    const sent = ['first', 'second datagram', 'x'.repeat(300)].map((t) => Buffer.from(t));
    try {
      for (let i = 0; i < sent.length; i++) {
        await peer.send(sent[i]!, local.port, '127.0.0.1');
        await peer.waitFor(i + 1);
      }
    } finally {
      await peer.close();
      await client.close();
      await server.close();
      await echo.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    const exited = new Promise((r) => tshark!.once('exit', r));
    tshark.kill('SIGINT');
    await exited;

    const buf = readFileSync(file);
    const result = decodeCapture(buf, { full: true });
    assert.equal(result.format, 'pcapng');
    assert.equal(result.truncated, false);
    assert.equal(result.stats.http2Connections, 1);
    const events = result.events;
    const req = events.find((e) => e.event === 'request');
    assert.ok(req && req.event === 'request');
    assert.equal(req.session, 'c1s1');
    assert.deepEqual(req.target, { host: '127.0.0.1', port: echo.port });
    assert.equal(req.protocol, 'connect-udp');
    const res = events.find((e) => e.event === 'response');
    assert.equal(res?.event === 'response' && res.status, 200);
    for (const d of ['->', '<-'] as const) {
      const caps = events.filter((e): e is Extract<InspectEvent, { event: 'capsule' }> => e.event === 'capsule' && e.dir === d);
      assert.deepEqual(caps.map((c) => c.payloadHex), sent.map((p) => p.toString('hex')));
      let offset = 0;
      for (const [i, c] of caps.entries()) {
        assert.equal(c.offset, offset);
        offset += encodeDatagramCapsule(sent[i]!).length;
      }
    }
    assert.equal(events.filter((e) => e.event === 'error').length, 0);
    assert.equal(events.at(-1)?.event, 'close');

    // The same file cut inside its last record decodes what came before and says where it was cut.
    const cut = buf.subarray(0, buf.length - 10);
    const partial = decodeCapture(cut);
    assert.equal(partial.truncated, true);
    assert.equal(partial.warnings[0]?.code, 'UT_ERR_CAPTURE_TRUNCATED');
    assert.match(partial.warnings[0]?.message ?? '', /^capture ends inside the record at byte \d+; that partial record is ignored$/);
    assert.ok(partial.events.some((e) => e.event === 'request'));
    // Cut inside the file header it is a coded error, not a crash.
    assert.throws(
      () => decodeCapture(buf.subarray(0, 2)),
      (err: unknown) => isUdpTunnelError(err) && err.code === 'UT_ERR_CAPTURE_TRUNCATED' && /truncated at byte 0/.test(err.message),
    );
  });
});
