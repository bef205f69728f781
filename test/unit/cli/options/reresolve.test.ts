import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../../../src/cli/errors.js';
import { reresolveConfig, resolveOptions } from '../../../../src/cli/options/resolve.js';
import { SERVE_SCHEMA, type ServeOptions } from '../../../../src/cli/schemas/serve.js';

describe('reresolveConfig: a reload reads the config file again', () => {
  let dir: string;
  let file: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-reresolve-'));
    file = join(dir, 'serve.yaml');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('flags and environment keep their values; file values change; keys gone from the file fall back to defaults', async () => {
    writeFileSync(file, 'max-sessions: 100\nidle-timeout: 30s\nallow: [10.0.0.0/8]\nmax-streams: 50\nself-signed: true\n');
    const first = await resolveOptions<ServeOptions>(SERVE_SCHEMA, ['--config', file, '--max-streams', '7'], { UDP_TUNNEL_TOKEN: 'from-the-environment-123' });
    assert.deepEqual([first.values['max-sessions'], first.values['max-streams'], first.values['self-signed']], [100, 7, true]);
    writeFileSync(file, 'max-sessions: 200\nmax-streams: 60\ntoken: [file-token-0123456789]\n');
    const next = await reresolveConfig(SERVE_SCHEMA, first);
    assert.equal(next.values['max-sessions'], 200);
    assert.equal(next.sources['max-sessions'], 'config');
    assert.equal(next.values['max-streams'], 7, 'the flag still wins');
    assert.equal(next.sources['max-streams'], 'flag');
    assert.deepEqual(next.values.token, ['from-the-environment-123'], 'the environment still beats the file');
    assert.equal(next.values['idle-timeout'], 120_000, 'back to the default');
    assert.equal(next.sources['idle-timeout'], 'default');
    assert.deepEqual(next.values.allow, []);
    assert.equal(next.values['self-signed'], false, 'a boolean gone from the file is off again');
    assert.equal(next.configFile, file);
  });

  it('a broken file is a UsageError naming the file', async () => {
    writeFileSync(file, 'max-sessions: 100\n');
    const first = await resolveOptions<ServeOptions>(SERVE_SCHEMA, ['--config', file], {});
    for (const [text, message] of [
      ['max-sessions: [', /not valid YAML/],
      ['max-sesions: 1\n', /unknown key 'max-sesions'/],
      ['max-sessions: 0\n', /max-sessions: '0' is out of range/],
    ] as const) {
      writeFileSync(file, text);
      await assert.rejects(reresolveConfig(SERVE_SCHEMA, first), (e: unknown) => e instanceof UsageError && message.test(e.message) && e.message.includes(file));
    }
  });
});
