import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BARE_RELAY_ENTRY, CLI_ENTRY, componentArgs, componentCommand } from '../../../src/bench/tunnel-launcher.js';

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
