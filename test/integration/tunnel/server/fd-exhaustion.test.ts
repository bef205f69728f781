import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type http2 from 'node:http2';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import type { ServerCounters } from '../../../../src/tunnel/server/tunnel-server.js';
import { startCli } from '../../../helpers/cli.js';
import { startUdpEcho, type UdpEcho } from '../../../helpers/net.js';
import { connectUdpHeaders, h1Request, h2Request, h2Session, rawH1, type H2Result } from '../../../helpers/tunnel.js';

const SCRIPT = fileURLToPath(new URL('../../../helpers/fd-limit-server.js', import.meta.url));
/** Low enough that a few dozen tunnels use up the descriptors, high enough for Node to start. */
const FD_LIMIT = 64;
/** More tunnels than FD_LIMIT descriptors could ever hold: reaching it means the limit was never hit. */
const MAX_ATTEMPTS = 4 * FD_LIMIT;
/** The CLI loads its modules with many files open at once, so it needs more room to start. */
const CLI_FD_LIMIT = 256;

const targetPath = (port: number): string => `/.well-known/masque/udp/127.0.0.1/${port}/`;

/** A TunnelServer in a child process under `ulimit -n`. */
interface LimitedServer {
  port: number;
  child: ChildProcessWithoutNullStreams;
  /** Asks the child for its counters; fails if it exited. */
  stats(): Promise<{ counters: ServerCounters; sessions: number; connections: number }>;
  stop(): Promise<void>;
}

async function startLimitedServer(): Promise<LimitedServer> {
  const child = spawn('bash', ['-c', 'ulimit -n "$0" && exec "$@"', String(FD_LIMIT), process.execPath, SCRIPT, '--serve']);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const replies: Array<(line: string) => void> = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => replies.shift()?.(line));
  const next = (): Promise<string> =>
    Promise.race([
      new Promise<string>((resolve) => replies.push(resolve)),
      exited.then((code) => Promise.reject(new Error(`server process exited (${code}): ${stderr}`))),
    ]);
  const { port } = JSON.parse(await next()) as { port: number };
  return {
    port,
    child,
    stats: async () => {
      const reply = next();
      child.stdin.write('stats\n');
      return JSON.parse(await reply) as { counters: ServerCounters; sessions: number; connections: number };
    },
    stop: async () => {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls the child until `cond` holds (its counters change with what the test closes). */
async function waitForStats(server: LimitedServer, cond: (s: Awaited<ReturnType<LimitedServer['stats']>>) => boolean, what: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    if (cond(await server.stats())) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends one datagram through an open tunnel and waits for the echo. */
async function roundTrip(stream: NodeJS.ReadWriteStream, text: string): Promise<string> {
  const capsule = encodeDatagramCapsule(Buffer.from(text));
  let got = Buffer.alloc(0);
  const done = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= capsule.length) {
        stream.removeListener('data', onData);
        resolve();
      }
    };
    stream.on('data', onData);
  });
  // An HTTP/1.1 tunnel socket comes back paused after its 101.
  stream.resume();
  stream.write(capsule);
  await done;
  assert.equal(got.toString('hex'), capsule.toString('hex'));
  return text;
}

const proxyStatus = (headers: Array<[string, string]> | undefined): string => headers?.find(([k]) => k === 'proxy-status')?.[1] ?? '';

describe(`tunnel/server: descriptor exhaustion (child process under ulimit -n ${FD_LIMIT})`, () => {
  let echo: UdpEcho;

  before(async () => {
    echo = await startUdpEcho('127.0.0.1');
  });
  after(async () => {
    await echo.close();
  });

  it('HTTP/2: a tunnel that cannot get a UDP socket gets 503 proxy_internal_error (not 502), is counted, and tunnels work again once descriptors free up', async () => {
    const server = await startLimitedServer();
    const authority = `127.0.0.1:${server.port}`;
    const open: H2Result[] = [];
    let session: http2.ClientHttp2Session | null = null;
    try {
      session = await h2Session(`http://${authority}`);
      let refused: H2Result | null = null;
      while (refused === null && open.length < MAX_ATTEMPTS) {
        const r = await h2Request(session, connectUdpHeaders(authority, targetPath(echo.port)), { waitMs: 20_000 });
        if (r.status === 200) open.push(r);
        else refused = r;
      }
      assert.ok(refused, `every one of ${MAX_ATTEMPTS} tunnels was accepted: the descriptor limit was never reached`);
      assert.ok(open.length > 0, 'tunnels worked before the descriptors ran out');
      // RFC 9209: the proxy's own trouble, not an unroutable destination.
      assert.equal(refused.status, 503);
      assert.match(String(refused.headers['proxy-status']), /^udp-tunnel; error=proxy_internal_error; details="(bind|connect) EMFILE: /);
      // Every further attempt fails the same way while nothing is freed.
      for (let i = 0; i < 3; i++) {
        const again = await h2Request(session, connectUdpHeaders(authority, targetPath(echo.port)), { waitMs: 20_000 });
        assert.equal(again.status, 503);
        assert.match(String(again.headers['proxy-status']), /error=proxy_internal_error/);
      }
      const s = await server.stats();
      assert.equal(s.counters.localResourceErrors, 4);
      assert.equal(s.counters.refused[503], 4);
      assert.equal(s.counters.refused[502], undefined);
      assert.equal(s.sessions, open.length);
      // The tunnels already open keep relaying.
      assert.equal(await roundTrip(open[0]!.stream, 'still relaying'), 'still relaying');

      for (const r of open.splice(0)) r.stream.close();
      await waitForStats(server, (x) => x.sessions === 0, 'the closed tunnels to release their sockets');
      const fresh = await h2Request(session, connectUdpHeaders(authority, targetPath(echo.port)), { waitMs: 20_000 });
      assert.equal(fresh.status, 200);
      assert.equal(await roundTrip(fresh.stream, 'recovered'), 'recovered');
      fresh.stream.close();
      assert.equal(server.child.exitCode, null, 'the server process is still running');
    } finally {
      for (const r of open) r.stream.close();
      session?.destroy();
      await server.stop();
    }
  });

  it('HTTP/1.1: refused or shed when out of descriptors, never 502; the listener survives EMFILE on accept and serves again', async () => {
    const server = await startLimitedServer();
    const sockets: net.Socket[] = [];
    try {
      // Each tunnel costs the server two descriptors (TCP and UDP): either may be the one that runs out.
      let failure: Awaited<ReturnType<typeof rawH1>> | null = null;
      let tunnels = 0;
      while (failure === null && tunnels < MAX_ATTEMPTS) {
        const r = await rawH1(server.port, h1Request(targetPath(echo.port)), { keepOpen: true, waitMs: 20_000 });
        sockets.push(r.socket);
        if (r.head?.status === 101) tunnels++;
        else failure = r;
      }
      assert.ok(failure, `every one of ${MAX_ATTEMPTS} tunnels was accepted: the descriptor limit was never reached`);
      if (failure.head !== null) {
        // The connection was accepted but its UDP socket could not be opened.
        assert.equal(failure.head.status, 503);
        assert.match(proxyStatus(failure.head.headers), /^udp-tunnel; error=proxy_internal_error; details="(bind|connect) EMFILE: /);
      } else {
        // No descriptor for the connection itself: libuv accepts it on a reserved descriptor and closes it.
        assert.equal(failure.closed, true);
      }

      // Idle connections now hit EMFILE on accept; at least one of them is closed by the server without an answer.
      let deadline: NodeJS.Timeout | undefined;
      const shed = new Promise<void>((resolve, reject) => {
        deadline = setTimeout(() => reject(new Error('no connection was closed on accept within 20 s')), 20_000);
        for (let i = 0; i < 16; i++) {
          const s = net.connect(server.port, '127.0.0.1');
          s.on('error', () => {});
          s.once('close', () => resolve());
          sockets.push(s);
        }
      });
      await shed.finally(() => clearTimeout(deadline));
      const s = await server.stats();
      assert.equal(server.child.exitCode, null, 'the server process is still running');
      assert.equal(s.sessions, tunnels);
      assert.equal(s.counters.refused[502], undefined);
      if (failure.head !== null) assert.ok(s.counters.localResourceErrors >= 1);

      for (const sock of sockets.splice(0)) sock.destroy();
      await waitForStats(server, (x) => x.sessions === 0 && x.connections === 0, 'the server to see every connection closed');
      const fresh = await rawH1(server.port, h1Request(targetPath(echo.port)), { keepOpen: true, waitMs: 20_000 });
      sockets.push(fresh.socket);
      assert.equal(fresh.head?.status, 101);
      assert.equal(await roundTrip(fresh.socket, 'recovered over HTTP/1.1'), 'recovered over HTTP/1.1');
    } finally {
      for (const sock of sockets) sock.destroy();
      await server.stop();
    }
  });

  it('serve logs running out of descriptors at most once per 10 s, with the count held back, and counts every one', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json', '--max-streams', '1000'], { fdLimit: CLI_FD_LIMIT });
    const startedAt = Date.now();
    const open: H2Result[] = [];
    let session: http2.ClientHttp2Session | null = null;
    let refusedCount = 0;
    let exitCode: number | null;
    try {
      const listening = await serve.waitForEvent('listening');
      const authority = `127.0.0.1:${String(listening['port'])}`;
      session = await h2Session(`http://${authority}`);
      while (refusedCount === 0 && open.length < 4 * CLI_FD_LIMIT) {
        const r = await h2Request(session, connectUdpHeaders(authority, targetPath(echo.port)), { waitMs: 20_000 });
        if (r.status === 200) open.push(r);
        else {
          assert.equal(r.status, 503);
          refusedCount++;
        }
      }
      assert.equal(refusedCount, 1, 'the descriptor limit was reached');
      for (let i = 0; i < 20; i++) {
        const r = await h2Request(session, connectUdpHeaders(authority, targetPath(echo.port)), { waitMs: 20_000 });
        assert.equal(r.status, 503);
        refusedCount++;
      }
      await serve.waitForEvent('local-resource-error');
    } finally {
      for (const r of open) r.stream.close();
      session?.destroy();
      exitCode = await serve.stop('SIGTERM');
    }
    assert.equal(exitCode, 0);
    const elapsed = Date.now() - startedAt;
    const reports = serve.lines.filter((l) => l['event'] === 'local-resource-error');
    const first = reports[0]!;
    assert.equal(first['code'], 'EMFILE');
    assert.equal(first['status'], 503);
    assert.equal(first['suppressed'], 0);
    // One report per started interval at most, however many requests failed in it.
    assert.ok(reports.length <= 1 + Math.floor(elapsed / 10_000), `${reports.length} reports in ${elapsed} ms`);
    const reported = reports.length + reports.reduce((n, l) => n + Number(l['suppressed']), 0);
    assert.ok(reported <= refusedCount);
    // Refusals for local trouble are reported only through the throttled line, never one 'refused' line each.
    assert.equal(serve.lines.filter((l) => l['event'] === 'refused').length, 0);
    const shutdown = serve.lines.find((l) => l['event'] === 'shutdown') as { counters: ServerCounters } | undefined;
    assert.equal(shutdown?.counters.localResourceErrors, refusedCount);
    assert.equal(shutdown?.counters.refused[503], refusedCount);
  });
});
