import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UsageError } from '../../../../src/cli/errors.js';
import { isGiven, resolveOptions, type ResolvedOptions } from '../../../../src/cli/options/resolve.js';
import type { CommandSchema } from '../../../../src/cli/options/spec.js';
import { CONNECT_SCHEMA } from '../../../../src/cli/schemas/connect.js';
import { INSPECT_SCHEMA } from '../../../../src/cli/schemas/inspect.js';
import { SERVE_SCHEMA } from '../../../../src/cli/schemas/serve.js';

type Values = Record<string, unknown>;

/** A small schema with one option of each interesting shape. */
const TEST_SCHEMA: CommandSchema = {
  command: 'test',
  usage: 'test [options]',
  summary: 'A schema for tests.',
  groups: ['Main', 'Output'],
  options: [
    { name: 'port', short: 'P', kind: 'int', min: 1, max: 65535, default: 4433, env: 'TEST_PORT', group: 'Main', describe: 'A port' },
    { name: 'name', kind: 'string', env: 'TEST_NAME', group: 'Main', describe: 'A name without default' },
    { name: 'wait', kind: 'duration', default: '30s', env: 'TEST_WAIT', group: 'Main', describe: 'A duration' },
    { name: 'item', kind: 'list', group: 'Main', describe: 'Repeatable' },
    { name: 'tag', kind: 'list', commas: true, group: 'Main', describe: 'Comma-separated' },
    { name: 'fast', kind: 'boolean', env: 'TEST_FAST', group: 'Main', describe: 'A boolean' },
    { name: 'pin-code', kind: 'int', min: 1000, max: 9999, env: 'TEST_PIN', secret: true, group: 'Main', describe: 'A secret number' },
    { name: 'input', kind: 'string', value: 'FILE|-', group: 'Main', describe: 'A file or -' },
    { name: 'config', kind: 'string', flagOnly: true, group: 'Output', describe: 'Config file' },
    { name: 'json', kind: 'boolean', group: 'Output', describe: 'JSON' },
  ],
  examples: [],
};

let dir = '';
let n = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-options-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a config file with `text` and returns its path. */
function configFile(text: string): string {
  const path = join(dir, `config-${++n}.yaml`);
  writeFileSync(path, text);
  return path;
}

function resolve(schema: CommandSchema, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<ResolvedOptions<Values>> {
  return resolveOptions<Values>(schema, argv, env);
}

/** Asserts resolving fails with a UsageError whose message matches `re`; returns the message. */
async function usageError(schema: CommandSchema, argv: string[], re: RegExp, env: NodeJS.ProcessEnv = {}): Promise<string> {
  let message = '';
  await assert.rejects(resolve(schema, argv, env), (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    message = err.message;
    assert.match(err.message, re);
    return true;
  });
  return message;
}

describe('resolveOptions: where a value comes from', () => {
  it('takes the default when nothing else is given, and says so', async () => {
    const r = await resolve(TEST_SCHEMA, []);
    assert.deepEqual(r.values, { port: 4433, wait: 30_000, item: [], tag: [], fast: false, json: false });
    assert.equal(r.sources['port'], 'default');
    assert.equal(r.sources['name'], undefined, 'an option without a value has no source');
    assert.equal(isGiven(r, 'port'), false);
    assert.equal(r.configFile, undefined);
  });

  it('prefers a flag to the environment, the environment to the config file, the file to the default', async () => {
    const file = configFile('port: 1001\nname: from-file\nwait: 5s\nfast: true\n');
    const env = { TEST_PORT: '2002', TEST_NAME: 'from-env' };
    const r = await resolve(TEST_SCHEMA, ['--config', file, '--port', '3003'], env);
    assert.equal(r.values['port'], 3003);
    assert.equal(r.sources['port'], 'flag');
    assert.equal(r.values['name'], 'from-env');
    assert.equal(r.sources['name'], 'env');
    assert.equal(r.values['wait'], 5000);
    assert.equal(r.sources['wait'], 'config');
    assert.equal(r.values['fast'], true);
    assert.equal(r.sources['fast'], 'config');
    assert.equal(r.values['json'], false);
    assert.equal(r.sources['json'], 'default');
    assert.equal(r.configFile, file);
    assert.ok(isGiven(r, 'port') && isGiven(r, 'name') && isGiven(r, 'wait') && !isGiven(r, 'json'));

    const noFlag = await resolve(TEST_SCHEMA, ['--config', file], env);
    assert.equal(noFlag.values['port'], 2002);
    assert.equal(noFlag.sources['port'], 'env');
    const noEnv = await resolve(TEST_SCHEMA, ['--config', file], {});
    assert.equal(noEnv.values['port'], 1001);
    assert.equal(noEnv.sources['port'], 'config');
  });

  it('ignores an empty environment variable', async () => {
    const r = await resolve(TEST_SCHEMA, [], { TEST_PORT: '', TEST_NAME: '' });
    assert.equal(r.values['port'], 4433);
    assert.equal(r.sources['port'], 'default');
    assert.equal(r.values['name'], undefined);
  });

  it('reads a boolean from the environment as config text', async () => {
    assert.equal((await resolve(TEST_SCHEMA, [], { TEST_FAST: 'yes' })).values['fast'], true);
    assert.equal((await resolve(TEST_SCHEMA, [], { TEST_FAST: 'off' })).values['fast'], false);
    await usageError(TEST_SCHEMA, [], /^TEST_FAST: 'maybe' is not true or false$/, { TEST_FAST: 'maybe' });
  });

  it('names the variable or the file and key that hold a bad value', async () => {
    await usageError(TEST_SCHEMA, [], /^TEST_PORT: '0' is out of range: it must be 1\.\.65535 \(0 would turn it off\)$/, { TEST_PORT: '0' });
    const file = configFile('wait: forever\n');
    await usageError(TEST_SCHEMA, ['--config', file], new RegExp(`^${escape(file)}: wait: 'forever' is not a duration`));
    await usageError(TEST_SCHEMA, ['--port', 'abc'], /^--port: 'abc' is not a number$/);
  });

  it('resolves the real connect and serve schemas with the same precedence', async () => {
    const file = configFile('proxy: http://127.0.0.1:1\ntarget: 127.0.0.1:53\nmax-sessions: 7\nidle-timeout: 90s\n');
    const env = { UDP_TUNNEL_PROXY: 'http://127.0.0.1:2', UDP_TUNNEL_TOKEN: 'env-token' };
    const c = await resolve(CONNECT_SCHEMA, ['--config', file, '--max-sessions', '9', '-H', 'a: b', '--header', 'c: d'], env);
    // --proxy is a list (several proxies fail over).
    assert.deepEqual(c.values['proxy'], ['http://127.0.0.1:2']);
    assert.equal(c.sources['proxy'], 'env');
    assert.equal(c.values['target'], '127.0.0.1:53');
    assert.equal(c.sources['target'], 'config');
    assert.equal(c.values['max-sessions'], 9);
    assert.equal(c.sources['max-sessions'], 'flag');
    assert.equal(c.values['idle-timeout'], 90_000);
    assert.equal(c.values['token'], 'env-token');
    assert.deepEqual(c.values['header'], ['a: b', 'c: d']);
    assert.equal(c.values['mode'], 'connect-udp');
    assert.equal(c.sources['mode'], 'default');

    const sfile = configFile('allow:\n  - 10.0.0.0/8:53\n  - 192.168.0.0/16\nmax-capsule: 64k\nauth: false\n');
    const s = await resolve(SERVE_SCHEMA, ['--config', sfile, '--allow', '127.0.0.1,::1', '--token', 'a', '--token', 'b']);
    // A flag replaces the file's list rather than adding to it, as for any other option.
    assert.deepEqual(s.values['allow'], ['127.0.0.1', '::1']);
    assert.equal(s.sources['allow'], 'flag');
    assert.equal(s.values['max-capsule'], 64 * 1024);
    assert.equal(s.values['auth'], false);
    assert.deepEqual(s.values['token'], ['a', 'b']);
    const sNoFlag = await resolve(SERVE_SCHEMA, ['--config', sfile]);
    assert.deepEqual(sNoFlag.values['allow'], ['10.0.0.0/8:53', '192.168.0.0/16']);
    assert.equal(sNoFlag.sources['allow'], 'config');
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('resolveOptions: the config file', () => {
  it('refuses an unknown key, suggesting the key meant', async () => {
    const file = configFile('prot: 80\n');
    await usageError(TEST_SCHEMA, ['--config', file], new RegExp(`^--config ${escape(file)}: unknown key 'prot'; did you mean port\\?$`));
    const connect = configFile('proxy: http://127.0.0.1:1\ntaget: 127.0.0.1:53\n');
    await usageError(CONNECT_SCHEMA, ['--config', connect], /unknown key 'taget'; did you mean target\?$/);
    const unrelated = configFile('colour-scheme: dark\n');
    await usageError(CONNECT_SCHEMA, ['--config', unrelated], /unknown key 'colour-scheme'$/);
  });

  it('refuses the flag-only keys (config, print-config, check) as keys', async () => {
    for (const key of ['config', 'print-config', 'check']) {
      const file = configFile(`${key}: ${key === 'config' ? 'other.yaml' : 'true'}\n`);
      await usageError(CONNECT_SCHEMA, ['--config', file], new RegExp(`unknown key '${key}' \\(it is a command-line flag only\\)$`));
    }
    await usageError(SERVE_SCHEMA, ['--config', configFile('print-config: true\n')], /unknown key 'print-config' \(it is a command-line flag only\)/);
  });

  it('refuses a file that is not a mapping', async () => {
    for (const text of ['- proxy\n- target\n', 'just text\n', '42\n']) {
      await usageError(CONNECT_SCHEMA, ['--config', configFile(text)], /: expected a mapping of option names to values/);
    }
  });

  it('refuses invalid YAML with a one-line message naming the file', async () => {
    const file = configFile('proxy: [http://127.0.0.1:1\ntarget: "unterminated\n');
    const message = await usageError(CONNECT_SCHEMA, ['--config', file], new RegExp(`^--config ${escape(file)}: not valid YAML: `));
    assert.equal(message.split('\n').length, 1, message);
  });

  it('refuses a key given twice', async () => {
    const file = configFile('max-sessions: 5\nmax-sessions: 6\n');
    await usageError(CONNECT_SCHEMA, ['--config', file], /not valid YAML: .*unique/i);
  });

  it('refuses a key without a value', async () => {
    await usageError(CONNECT_SCHEMA, ['--config', configFile('proxy:\n')], /: proxy has no value$/);
    await usageError(CONNECT_SCHEMA, ['--config', configFile('max-sessions: null\n')], /: max-sessions has no value$/);
    await usageError(CONNECT_SCHEMA, ['--config', configFile('header: ~\n')], /: header has no value$/);
  });

  it('reads lists as YAML sequences or single values, and scalars of any YAML type', async () => {
    const file = configFile("item:\n  - 'x: 1'\n  - y\ntag: [a, 'b,c']\nport: 8080\nwait: 250ms\nfast: yes\nname: 5\n");
    const r = await resolve(TEST_SCHEMA, ['--config', file]);
    assert.deepEqual(r.values['item'], ['x: 1', 'y']);
    assert.deepEqual(r.values['tag'], ['a', 'b', 'c']);
    assert.equal(r.values['port'], 8080);
    assert.equal(r.values['wait'], 250);
    assert.equal(r.values['fast'], true);
    assert.equal(r.values['name'], '5');
    const single = await resolve(TEST_SCHEMA, ['--config', configFile('item: only\n')]);
    assert.deepEqual(single.values['item'], ['only']);
  });

  it('refuses a list or mapping where one value is expected', async () => {
    await usageError(TEST_SCHEMA, ['--config', configFile('port: [1, 2]\n')], /port: expected a single value$/);
    await usageError(TEST_SCHEMA, ['--config', configFile('fast: [1]\n')], /fast: expected true or false, not a list or mapping$/);
    await usageError(TEST_SCHEMA, ['--config', configFile('item:\n  - a: 1\n')], /item: expected text or a list of text$/);
  });

  it('treats an empty file as no options, and a missing file as a usage error', async () => {
    const r = await resolve(TEST_SCHEMA, ['--config', configFile('# nothing yet\n')]);
    assert.equal(r.values['port'], 4433);
    await usageError(TEST_SCHEMA, ['--config', join(dir, 'absent.yaml')], /absent\.yaml: no such file$/);
  });
});

describe('resolveOptions: flags', () => {
  it('lets the last of a repeated scalar flag win', async () => {
    const r = await resolve(TEST_SCHEMA, ['--port', '5', '-P', '6', '--port', '7']);
    assert.equal(r.values['port'], 7);
    const c = await resolve(CONNECT_SCHEMA, ['--max-sessions', '5', '--max-sessions', '9']);
    assert.equal(c.values['max-sessions'], 9);
  });

  it("takes a lone '-' after a value flag as its value (stdin), long or short", async () => {
    assert.equal((await resolve(TEST_SCHEMA, ['--input', '-'])).values['input'], '-');
    assert.equal((await resolve(TEST_SCHEMA, ['--input=-'])).values['input'], '-');
    const raw = await resolve(INSPECT_SCHEMA, ['--raw', '-', '--hex']);
    assert.equal(raw.values['raw'], '-');
    assert.equal(raw.values['hex'], true);
    assert.equal((await resolve(INSPECT_SCHEMA, ['-f', '-', '--json'])).values['file'], '-');
  });

  it("refuses a lone '-' after a boolean rather than reading it as false", async () => {
    await usageError(INSPECT_SCHEMA, ['--hex', '-'], /^unexpected argument '-'$/);
    await usageError(TEST_SCHEMA, ['--json', '-'], /^unexpected argument '-'$/);
  });

  it('reads --flag=VALUE on a boolean as config text, and refuses other text', async () => {
    assert.equal((await resolve(TEST_SCHEMA, ['--fast=yes'])).values['fast'], true);
    assert.equal((await resolve(TEST_SCHEMA, ['--fast=off'])).values['fast'], false);
    assert.equal((await resolve(TEST_SCHEMA, ['--fast=true'])).values['fast'], true);
    await usageError(TEST_SCHEMA, ['--fast=maybe'], /^--fast: 'maybe' is not true or false$/);
    const c = await resolve(CONNECT_SCHEMA, ['--no-buffer']);
    assert.equal(c.values['buffer'], false);
    assert.equal(c.sources['buffer'], 'flag');
  });

  it('refuses a stray positional argument', async () => {
    await usageError(TEST_SCHEMA, ['stray'], /^unexpected argument 'stray'$/);
    await usageError(CONNECT_SCHEMA, ['--proxy', 'http://127.0.0.1:1', 'extra'], /^unexpected argument 'extra'$/);
    await usageError(CONNECT_SCHEMA, ['--', '--proxy'], /^unexpected argument '--proxy'$/);
    // A flag written without its dashes is suggested as the flag.
    await usageError(CONNECT_SCHEMA, ['target', '127.0.0.1:53'], /^unexpected argument 'target'; did you mean --target\?$/);
  });

  it('reports an unknown flag once, as typed, with a suggestion when one is close', async () => {
    const bogus = await usageError(CONNECT_SCHEMA, ['--bogus-flag'], /^unknown option --bogus-flag$/);
    assert.equal(bogus.match(/bogus/gi)?.length, 1, bogus);
    assert.doesNotMatch(bogus, /bogusFlag/);
    await usageError(CONNECT_SCHEMA, ['--bogus-flag=3'], /^unknown option --bogus-flag$/);
    await usageError(CONNECT_SCHEMA, ['--taget', '127.0.0.1:53'], /^unknown option --taget; did you mean --target\?$/);
    await usageError(CONNECT_SCHEMA, ['--maxSessions', '3'], /^unknown option --maxSessions; did you mean --max-sessions\?$/);
    await usageError(CONNECT_SCHEMA, ['--no-bufer'], /^unknown option --no-bufer; did you mean --buffer\?$/);
    await usageError(CONNECT_SCHEMA, ['-Z'], /^unknown option -Z$/);
  });

  it('refuses a value flag without its value, naming the placeholder', async () => {
    await usageError(CONNECT_SCHEMA, ['--max-sessions'], /^--max-sessions needs a value \(N\)$/);
    await usageError(CONNECT_SCHEMA, ['--local'], /^--local needs a value \(HOST:PORT\)$/);
    await usageError(CONNECT_SCHEMA, ['-H'], /^--header needs a value \('NAME: VALUE'\)$/);
    await usageError(SERVE_SCHEMA, ['--allow'], /^--allow needs a value/);
  });

  it("never echoes a secret's value, from a flag, the environment or the file", async () => {
    for (const bad of ['12ab', "9'9", "s3cr'et'"]) {
      const fromFlag = await usageError(TEST_SCHEMA, ['--pin-code', bad], /^--pin-code: the value is not a number$/);
      assert.ok(!fromFlag.includes(bad), fromFlag);
      const fromEnv = await usageError(TEST_SCHEMA, [], /^TEST_PIN: the value is not a number$/, { TEST_PIN: bad });
      assert.ok(!fromEnv.includes(bad), fromEnv);
      const file = configFile(`pin-code: "${bad}"\n`);
      const fromFile = await usageError(TEST_SCHEMA, ['--config', file], /pin-code: the value is not a number$/);
      assert.ok(!fromFile.includes(bad), fromFile);
    }
    const range = await usageError(TEST_SCHEMA, ['--pin-code', '12'], /^--pin-code: the value is out of range: it must be 1000\.\.9999$/);
    assert.doesNotMatch(range, /'12'/);
  });
});
