import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { BENCH_MODES, DEFAULT_BENCH_MODE, DEFAULT_BENCH_POST_PATH, benchEntry, benchMode, benchModeKind, checkBenchPostPath, isExposeMode } from '../../../src/bench/modes.js';
import type { BenchModeContext } from '../../../src/bench/modes.js';
import { parsePostRoutes } from '../../../src/tunnel/server-config.js';
import { componentArgs } from '../../../src/bench/tunnel-launcher.js';

const V4: BenchModeContext = { target: { host: '127.0.0.1', port: 7007 }, postPath: '/bench' };
const V6: BenchModeContext = { target: { host: '::1', port: 9 }, postPath: '/p/q' };

/** Everything a mode derives from a context, as plain values. */
function derive(name: string, ctx: BenchModeContext): unknown {
  const m = benchMode(name);
  return {
    usesPostPath: m.usesPostPath,
    serveArgs: m.serveArgs(ctx),
    connectArgs: m.connectArgs(ctx),
    proxyConfig: m.proxyConfig(ctx),
    serverOptions: m.serverOptions(ctx),
  };
}

describe('BENCH_MODES', () => {
  it('lists the transports in --help order, the default first', () => {
    assert.deepEqual(
      BENCH_MODES.map((m) => m.name),
      ['connect-udp', 'connect-udp-h1', 'post', 'bind', 'bind-uncompressed', 'bare-relay'],
    );
    assert.equal(DEFAULT_BENCH_MODE, 'connect-udp');
    assert.equal(DEFAULT_BENCH_POST_PATH, '/bench');
    assert.match(benchMode('post').describe, /NOT RFC 9298/);
  });

  it('connect-udp adds nothing: the target goes in the URI template', () => {
    assert.deepEqual(derive('connect-udp', V4), { usesPostPath: false, serveArgs: [], connectArgs: [], proxyConfig: {}, serverOptions: {} });
  });

  it('connect-udp-h1 selects HTTP/1.1 on connect only', () => {
    assert.deepEqual(derive('connect-udp-h1', V4), {
      usesPostPath: false,
      serveArgs: [],
      connectArgs: ['--http', '1.1'],
      proxyConfig: { http: '1.1' },
      serverOptions: {},
    });
  });

  it('post routes the path to the run target on serve and selects POST on connect', () => {
    assert.deepEqual(derive('post', V4), {
      usesPostPath: true,
      serveArgs: ['--post-route', '/bench=127.0.0.1:7007'],
      connectArgs: ['--mode', 'post', '--post-path', '/bench'],
      proxyConfig: { mode: 'post', postPath: '/bench' },
      serverOptions: { postRoutes: new Map([['/bench', { host: '127.0.0.1', port: 7007 }]]) },
    });
    assert.deepEqual(derive('post', V6), {
      usesPostPath: true,
      serveArgs: ['--post-route', '/p/q=[::1]:9'],
      connectArgs: ['--mode', 'post', '--post-path', '/p/q'],
      proxyConfig: { mode: 'post', postPath: '/p/q' },
      serverOptions: { postRoutes: new Map([['/p/q', { host: '::1', port: 9 }]]) },
    });
  });

  it('bind: serve accepts bound requests, connect exposes the echo (entry expose); bind-uncompressed turns compression off, worker isolation only', () => {
    for (const name of ['bind', 'bind-uncompressed']) {
      assert.deepEqual(derive(name, V4), { usesPostPath: false, serveArgs: ['--allow-bind'], connectArgs: [], proxyConfig: {}, serverOptions: { allowBind: true } });
      assert.equal(benchEntry(benchMode(name)), 'expose');
      assert.equal(isExposeMode(name), true);
    }
    assert.equal(benchMode('bind').exposerOptions, undefined);
    assert.equal(benchMode('bind').onlyIsolation, undefined);
    assert.deepEqual(benchMode('bind-uncompressed').exposerOptions, { compress: false });
    assert.equal(benchMode('bind-uncompressed').onlyIsolation?.isolation, 'worker');
    // The idle probe: no more remote peers than compressed contexts (the uncompressed one takes one of 256), in small batches.
    for (const name of ['bind', 'bind-uncompressed']) assert.deepEqual(benchMode(name).idleProbe, { maxSessions: 255, burst: 32 });
    for (const m of BENCH_MODES.filter((x) => !x.name.startsWith('bind'))) assert.equal(m.idleProbe, undefined, m.name);
    for (const m of BENCH_MODES.filter((x) => !x.name.startsWith('bind'))) assert.equal(benchEntry(m), 'listen', m.name);
    assert.equal(isExposeMode('no-such-mode'), false);
  });

  // bare-relay starts no serve or connect, so it has no flags to compare.
  for (const m of BENCH_MODES.filter((x) => benchModeKind(x) === 'tunnel')) {
    it(`${m.name}: process and worker isolation configure the same tunnel`, () => {
      for (const ctx of [V4, V6]) {
        // serve: the --post-route flags, as serve parses them, give the routes the worker passes to TunnelServer.
        const args = m.serveArgs(ctx);
        const routes: string[] = [];
        args.forEach((a, i) => {
          if (a === '--post-route') routes.push(args[i + 1]!);
        });
        assert.deepEqual(parsePostRoutes(routes), m.serverOptions(ctx).postRoutes ?? new Map());
        assert.equal(args.includes('--allow-bind'), m.serverOptions(ctx).allowBind === true);
        // connect: the transport buildTransport picks from the worker's ProxyConfig is the one the flags name.
        const c = m.connectArgs(ctx);
        const flag = (name: string): string | undefined => {
          const i = c.indexOf(name);
          return i < 0 ? undefined : c[i + 1];
        };
        const expected = flag('--mode') === 'post' ? 'post' : flag('--http') === '1.1' ? 'h1' : 'h2';
        const t = buildTransport({ proxy: 'http://127.0.0.1:1', target: ctx.target, ...m.proxyConfig(ctx) });
        assert.equal(t.name, expected);
        assert.equal(m.proxyConfig(ctx).postPath, flag('--post-path'));
      }
    });
  }

  it('refuses an unknown mode with a coded error', () => {
    assert.throws(() => benchMode('carrier-pigeon'), (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION') && /known: connect-udp, connect-udp-h1, post, bind, bind-uncompressed, bare-relay\)/.test(e.message));
  });
});

describe('checkBenchPostPath', () => {
  it('accepts a path starting with /', () => {
    assert.equal(checkBenchPostPath('/'), '/');
    assert.equal(checkBenchPostPath('/a/b?c'), '/a/b?c');
  });
  for (const bad of ['', 'bench', '/a b', '/a\nb', '/a\x7f', '/a=b']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => checkBenchPostPath(bad), (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'));
    });
  }
});

describe('bench/tunnel-launcher: componentArgs in post mode', () => {
  it('routes the post path to the target on serve and sends it on connect', () => {
    assert.deepEqual(
      componentArgs({ role: 'serve', isolation: 'process', mode: 'post', host: '::1', target: '[::1]:4000', postPath: '/x' }),
      ['serve', '--listen', '[::1]:0', '--json', '--quiet', '--max-sessions-per-client', '10000', '--post-route', '/x=[::1]:4000'],
    );
    assert.deepEqual(
      componentArgs({ role: 'connect', isolation: 'process', mode: 'post', host: '127.0.0.1', proxy: 'http://127.0.0.1:9', target: '127.0.0.1:4000' }),
      ['connect', '--local', '127.0.0.1:0', '--proxy', 'http://127.0.0.1:9', '--json', '--quiet', '--no-proxy-check', '--mode', 'post', '--post-path', '/bench'],
    );
  });

  it('refuses a component without a target', () => {
    assert.throws(
      () => componentArgs({ role: 'serve', isolation: 'process', mode: 'post', host: '127.0.0.1' }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'),
    );
  });
});
