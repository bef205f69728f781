import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UsageError } from '../../../src/cli/errors.js';
import { forwardFromEntry, formatForwardSpec, parseForwardSpec, type ForwardDefaults } from '../../../src/cli/forwards.js';
import { renderConfig } from '../../../src/cli/options/print-config.js';
import { resolveOptions } from '../../../src/cli/options/resolve.js';
import { CONNECT_SCHEMA } from '../../../src/cli/schemas/connect.js';

/** Good -L forms: the text, what it means, and its canonical text (which parses back to the same forward). */
const GOOD: { text: string; local: [string, number]; target: [string, number]; canonical: string }[] = [
  { text: '5353:127.0.0.1:53', local: ['127.0.0.1', 5353], target: ['127.0.0.1', 53], canonical: '127.0.0.1:5353:127.0.0.1:53' },
  { text: '0:127.0.0.1:53', local: ['127.0.0.1', 0], target: ['127.0.0.1', 53], canonical: '127.0.0.1:0:127.0.0.1:53' },
  { text: '127.0.0.2:5353:127.0.0.1:53', local: ['127.0.0.2', 5353], target: ['127.0.0.1', 53], canonical: '127.0.0.2:5353:127.0.0.1:53' },
  { text: '0.0.0.0:5353:dns.example:53', local: ['0.0.0.0', 5353], target: ['dns.example', 53], canonical: '0.0.0.0:5353:dns.example:53' },
  { text: '[::1]:5353:[2001:db8::1]:53', local: ['::1', 5353], target: ['2001:db8::1', 53], canonical: '[::1]:5353:[2001:db8::1]:53' },
  { text: '5353:[::1]:53', local: ['127.0.0.1', 5353], target: ['::1', 53], canonical: '127.0.0.1:5353:[::1]:53' },
  { text: '[::]:0:localhost:65535', local: ['::', 0], target: ['localhost', 65535], canonical: '[::]:0:localhost:65535' },
  { text: 'localhost:1:127.0.0.1:1', local: ['localhost', 1], target: ['127.0.0.1', 1], canonical: 'localhost:1:127.0.0.1:1' },
  { text: ' 5353:127.0.0.1:53 ', local: ['127.0.0.1', 5353], target: ['127.0.0.1', 53], canonical: '127.0.0.1:5353:127.0.0.1:53' },
];

/** Bad -L forms and the part of the message that says why. */
const BAD: { text: string; why: RegExp }[] = [
  { text: '99999:127.0.0.1:53', why: /local port '99999' must be 0\.\.65535/ },
  { text: '5353:127.0.0.1:99999', why: /target port '99999' must be 1\.\.65535/ },
  { text: '5353:127.0.0.1:0', why: /target port '0' must be 1\.\.65535/ },
  { text: '5353:127.0.0.1:-1', why: /target port '-1'/ },
  { text: 'x:127.0.0.1:53', why: /local port 'x'/ },
  { text: '5353:127.0.0.1', why: /missing parts/ },
  { text: '5353', why: /missing parts/ },
  { text: '', why: /missing parts/ },
  { text: '5353::53', why: /empty HOST/ },
  { text: ':5353:127.0.0.1:53', why: /empty BIND \(write 0\.0\.0\.0 or \[::\]/ },
  { text: '5353:127.0.0.1:', why: /target port ''/ },
  { text: '::1:5353:127.0.0.1:53', why: /IPv6 addresses must be written in brackets/ },
  { text: '5353:2001:db8::1:53', why: /IPv6 addresses must be written in brackets/ },
  { text: '[::1:5353:127.0.0.1:53', why: /brackets do not pair up/ },
  { text: '::1]:5353:127.0.0.1:53', why: /brackets do not pair up/ },
  { text: '[[::1]]:5353:127.0.0.1:53', why: /brackets do not pair up/ },
  { text: '[::1]x:5353:127.0.0.1:53', why: /brackets do not pair up/ },
  { text: '[127.0.0.1]:5353:127.0.0.1:53', why: /not an IPv6 address inside \[ \]/ },
  { text: '5353:[fe80::1%eth0]:53', why: /zone identifiers are not supported/ },
  { text: '[fe80::1%25lo]:5353:127.0.0.1:53', why: /zone identifiers are not supported/ },
  { text: '5353:bad_host!:53', why: /HOST 'bad_host!' is not a valid address or host name/ },
  { text: 'a:b:c:d:e', why: /IPv6 addresses must be written in brackets/ },
];

describe('cli/forwards: -L [BIND:]PORT:HOST:PORT', () => {
  for (const g of GOOD) {
    it(`reads '${g.text}' and round-trips through '${g.canonical}'`, () => {
      const f = parseForwardSpec(g.text);
      assert.deepEqual(f, { local: { host: g.local[0], port: g.local[1] }, target: { host: g.target[0], port: g.target[1] } });
      assert.equal(formatForwardSpec(f), g.canonical);
      assert.deepEqual(parseForwardSpec(formatForwardSpec(f)), f);
    });
  }
  for (const b of BAD) {
    it(`refuses '${b.text}'`, () => {
      assert.throws(
        () => parseForwardSpec(b.text),
        (err: unknown) => {
          assert.ok(err instanceof UsageError);
          assert.match(err.message, b.why);
          assert.ok(err.message.startsWith(`-L '${b.text}': `), err.message);
          assert.match(err.message, /expected \[BIND:\]PORT:HOST:PORT/);
          return true;
        },
      );
    });
  }
});

const DEFAULTS: ForwardDefaults = { mode: 'connect-udp', 'post-path': '/', 'idle-timeout': 60_000, buffer: true, 'max-buffered-datagrams': 1024, 'max-buffered-bytes': 16384 };

describe('cli/forwards: one forwards: entry', () => {
  it('takes its own settings over connect\'s and inherits the rest', () => {
    const f = forwardFromEntry({ local: '5353', target: '[::1]:53', 'idle-timeout': 5000, header: ['x-a: 1'], 'max-buffered-bytes': 100 }, 0, DEFAULTS, 'c.yaml');
    assert.deepEqual(f.config, {
      host: '127.0.0.1',
      port: 5353,
      target: { host: '::1', port: 53 },
      mode: 'connect-udp',
      headers: [['x-a', '1']],
      idleTimeoutMs: 5000,
      buffer: { enabled: true, maxDatagrams: 1024, maxBytes: 100 },
    });
    assert.equal(f.target, '[::1]:53');
  });

  it('a POST forward keeps its path and has no target', () => {
    const f = forwardFromEntry({ local: '127.0.0.1:0', mode: 'post', 'post-path': '/dns' }, 2, DEFAULTS, 'c.yaml');
    assert.equal(f.config.postPath, '/dns');
    assert.equal(f.config.target, undefined);
    assert.equal(f.postPath, '/dns');
  });

  const bad: { entry: Record<string, unknown>; why: RegExp }[] = [
    { entry: { local: '0' }, why: /forwards\[3\]: target HOST:PORT is required in connect-udp mode/ },
    { entry: { local: '0', mode: 'post', target: '127.0.0.1:53' }, why: /forwards\[3\]: target does not apply with mode post/ },
    { entry: { local: '0', target: '127.0.0.1:53', 'post-path': '/x' }, why: /forwards\[3\]: post-path applies only to mode post/ },
    { entry: { local: '0', target: '127.0.0.1:53', buffer: false, 'max-buffered-bytes': 10 }, why: /forwards\[3\]: max-buffered-bytes has no effect with buffer: false/ },
    { entry: { local: '99999', target: '127.0.0.1:53' }, why: /forwards\[3\]: local '99999': port must be 0\.\.65535/ },
    { entry: { local: '::1:53', target: '127.0.0.1:53' }, why: /forwards\[3\]: local '::1:53': IPv6 addresses must be written in brackets/ },
    { entry: { local: '0', target: '127.0.0.1:0' }, why: /forwards\[3\]: target '127.0.0.1:0': port must be 1\.\.65535/ },
    { entry: { local: '0', target: '[fe80::1%lo]:53' }, why: /zone identifiers are not supported/ },
    { entry: { local: '0', target: '127.0.0.1:53', header: ['x: %NOPE%'] }, why: /forwards\[3\]: header: 'x: %NOPE%': unknown %NOPE%/ },
    { entry: { local: '0', target: '127.0.0.1:53', header: ['host: a'] }, why: /forwards\[3\]: header: 'host: a': host is managed/ },
  ];
  for (const b of bad) {
    it(`refuses ${JSON.stringify(b.entry)}`, () => {
      assert.throws(() => forwardFromEntry(b.entry, 3, DEFAULTS, 'c.yaml'), (err: unknown) => err instanceof UsageError && b.why.test(err.message) && err.message.startsWith('--config c.yaml: forwards[3]'));
    });
  }
});

describe('cli/options: the forwards: list in a config file', () => {
  let dir = '';
  let n = 0;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-forwards-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (text: string): string => {
    const p = join(dir, `c${n++}.yaml`);
    writeFileSync(p, text);
    return p;
  };

  it('reads each entry\'s keys as the options of the same name', async () => {
    const p = file('proxy: http://127.0.0.1:1\nforwards:\n  - { local: 5353, target: 127.0.0.1:53, idle-timeout: 5s, buffer: no }\n  - local: 0\n    mode: post\n    post-path: /dns\n    header: [\'x-a: b\']\n');
    const r = await resolveOptions(CONNECT_SCHEMA, ['--config', p]);
    assert.deepEqual(r.lists?.['forwards'], [
      { local: '5353', target: '127.0.0.1:53', 'idle-timeout': 5000, buffer: false },
      { local: '0', mode: 'post', 'post-path': '/dns', header: ['x-a: b'] },
    ]);
  });

  it('--print-config shows the list, values as they would be typed, and reads back the same', async () => {
    const p = file('proxy: http://127.0.0.1:1\nforwards:\n  - { local: 5353, target: 127.0.0.1:53, idle-timeout: 90s, max-buffered-bytes: 64k }\n');
    const r = await resolveOptions<Record<string, unknown>>(CONNECT_SCHEMA, ['--config', p]);
    const yaml = await renderConfig(CONNECT_SCHEMA, r);
    assert.match(yaml, /^forwards: {2}# .*c\d+\.yaml$/m);
    assert.match(yaml, /idle-timeout: 90s/);
    assert.match(yaml, /max-buffered-bytes: 64KiB/);
    const again = await resolveOptions(CONNECT_SCHEMA, ['--config', file(yaml)]);
    assert.deepEqual(again.lists?.['forwards'], r.lists?.['forwards']);
  });

  const bad: { text: string; why: RegExp }[] = [
    { text: 'forwards:\n  - { local: 1, target: 127.0.0.1:53 }\n  - { local: 2, idle-timout: 5s }\n', why: /forwards\[1\]: unknown key 'idle-timout'; did you mean idle-timeout\? \(keys: local, target,/ },
    { text: 'forwards:\n  - { local: 1, proxy: http://x }\n', why: /forwards\[0\]: unknown key 'proxy' \(keys: / },
    { text: 'forwards:\n  - { target: 127.0.0.1:53 }\n', why: /forwards\[0\]: local is required/ },
    { text: 'forwards:\n  - { local: 1, idle-timeout: soon }\n', why: /forwards\[0\]: idle-timeout: 'soon' is not a duration/ },
    { text: 'forwards:\n  - { local: 1, mode: udp }\n', why: /forwards\[0\]: mode: 'udp' is not one of connect-udp, post/ },
    { text: 'forwards:\n  - { local: 1, target: }\n', why: /forwards\[0\]: target has no value/ },
    { text: 'forwards:\n  - 5353:127.0.0.1:53\n', why: /forwards\[0\]: expected a mapping of local, target/ },
    { text: 'forwards: 5353\n', why: /forwards must be a list of mappings/ },
    { text: 'forwards: []\n', why: /forwards must be a list of mappings/ },
    { text: 'forwrds: []\n', why: /unknown key 'forwrds'; did you mean forwards\?/ },
  ];
  for (const b of bad) {
    it(`refuses ${JSON.stringify(b.text)}`, async () => {
      await assert.rejects(resolveOptions(CONNECT_SCHEMA, ['--config', file(b.text)]), (err: unknown) => err instanceof UsageError && b.why.test(err.message));
    });
  }
});
