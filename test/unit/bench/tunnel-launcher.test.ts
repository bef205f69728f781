import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BARE_RELAY_ENTRY, CLI_ENTRY, addExposerDrops, componentArgs, componentCommand, exposedAddress } from '../../../src/bench/tunnel-launcher.js';

describe('bench/tunnel-launcher: componentArgs', () => {
  it('builds serve and connect command lines with port 0, JSON output and the TLS files', () => {
    const tls = { certPath: '/c.pem', keyPath: '/k.pem', cert: '', key: '' };
    assert.deepEqual(componentArgs({ role: 'serve', isolation: 'process', mode: 'connect-udp', host: '::1', target: '[::1]:7', tls }), [
      'serve', '--listen', '[::1]:0', '--json', '--quiet', '--max-sessions-per-client', '10000', '--cert', '/c.pem', '--key', '/k.pem',
    ]);
    assert.deepEqual(
      componentArgs({ role: 'connect', isolation: 'process', mode: 'connect-udp', host: '127.0.0.1', proxy: 'https://127.0.0.1:9', target: '127.0.0.1:7', tls }),
      ['connect', '--local', '127.0.0.1:0', '--proxy', 'https://127.0.0.1:9', '--json', '--quiet', '--no-proxy-check', '--target', '127.0.0.1:7', '--ca', '/c.pem'],
    );
  });
});

describe('bench/tunnel-launcher: componentCommand', () => {
  it('runs the CLI for tunnel modes and the bare-relay entry, front or back, for bare-relay', () => {
    const tls = { certPath: '/c.pem', keyPath: '/k.pem', cert: '', key: '' };
    assert.deepEqual(componentCommand({ role: 'serve', isolation: 'process', mode: 'connect-udp', host: '127.0.0.1', target: '127.0.0.1:7' }), [
      CLI_ENTRY, 'serve', '--listen', '127.0.0.1:0', '--json', '--quiet', '--max-sessions-per-client', '10000',
    ]);
    assert.deepEqual(componentCommand({ role: 'serve', isolation: 'process', mode: 'bare-relay', host: '::1', target: '[::1]:7', tls }), [
      BARE_RELAY_ENTRY, 'back', '--listen', '[::1]:0', '--target', '[::1]:7', '--cert', '/c.pem', '--key', '/k.pem',
    ]);
    assert.deepEqual(
      componentCommand({ role: 'connect', isolation: 'process', mode: 'bare-relay', host: '::1', proxy: 'https://[::1]:4433', target: '[::1]:7', tls }),
      [BARE_RELAY_ENTRY, 'front', '--listen', '[::1]:0', '--back', '[::1]:4433', '--ca', '/c.pem'],
    );
    assert.match(BARE_RELAY_ENTRY, /bare-relay-process\.js$/);
  });
});

describe('bench/tunnel-launcher: bind mode (a bound tunnel)', () => {
  it('starts serve with --allow-bind and connect exposing the echo, without --local, --target or --no-proxy-check', () => {
    const tls = { certPath: '/c.pem', keyPath: '/k.pem', cert: '', key: '' };
    assert.deepEqual(componentArgs({ role: 'serve', isolation: 'process', mode: 'bind', host: '127.0.0.1', target: '127.0.0.1:7' }), [
      'serve', '--listen', '127.0.0.1:0', '--json', '--quiet', '--max-sessions-per-client', '10000', '--allow-bind',
    ]);
    assert.deepEqual(
      componentArgs({ role: 'connect', isolation: 'process', mode: 'bind', host: '::1', proxy: 'https://[::1]:9', target: '[::1]:7', tls, insecure: true }),
      ['connect', '--expose', '[::1]:7', '--proxy', 'https://[::1]:9', '--json', '--quiet', '--ca', '/c.pem', '--insecure'],
    );
  });

  it('exposedAddress takes the public address of the generator host\'s family, else the first', () => {
    assert.deepEqual(exposedAddress(['127.0.0.1:4000', '[::1]:4001'], '::1'), { address: '::1', port: 4001, family: 'IPv6' });
    assert.deepEqual(exposedAddress(['127.0.0.1:4000', '[::1]:4001'], '127.0.0.1'), { address: '127.0.0.1', port: 4000, family: 'IPv4' });
    assert.deepEqual(exposedAddress(['[::1]:4001'], '127.0.0.1'), { address: '::1', port: 4001, family: 'IPv6' });
    assert.deepEqual(exposedAddress(['not an address', 7, '127.0.0.1:4000'], '127.0.0.1'), { address: '127.0.0.1', port: 4000, family: 'IPv4' });
    assert.equal(exposedAddress([], '127.0.0.1'), null);
    assert.equal(exposedAddress(['nonsense'], '127.0.0.1'), null);
    assert.equal(exposedAddress('127.0.0.1:4000', '127.0.0.1'), null);
  });

  it("addExposerDrops sums the Exposer's non-zero drops and its tunnels' (prefixed tunnel.)", () => {
    const into: Record<string, number> = { pending: 1 };
    addExposerDrops(into, {
      drops: { peerLimit: 0, pending: 2, sendQueue: 3, bogus: 'x' },
      tunnel: { drops: { backpressure: 4, notOpen: 0 } },
    });
    assert.deepEqual(into, { pending: 3, sendQueue: 3, 'tunnel.backpressure': 4 });
    addExposerDrops(into, { drops: null, tunnel: 5 });
    assert.deepEqual(into, { pending: 3, sendQueue: 3, 'tunnel.backpressure': 4 });
  });
});
