import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { runCli, type CliResult, type EnvPatch } from '../helpers/cli.js';

// The mistakes people make on the command line, run through the real CLI. Every case here ends at argument checking
// (or prints help or the effective config), so none of them opens a socket.

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Variables the options read, removed so the runner's environment cannot change a result. */
const CLEAN: EnvPatch = { UDP_TUNNEL_PROXY: undefined, UDP_TUNNEL_TOKEN: undefined, SSLKEYLOGFILE: undefined };

function cli(args: string[], env: EnvPatch = {}): Promise<CliResult> {
  return runCli(args, { env: { ...CLEAN, ...env } });
}

/**
 * Asserts a usage error: exit 2, `re` on the first stderr line, nothing on stdout; a command-line mistake is followed
 * by the help pointer, a value the library refused (an address, a URL) by nothing: one line says it all.
 */
function assertUsage(r: CliResult, re: RegExp, pointer = true): string {
  assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
  const [first, second, ...rest] = r.stderr.split('\n');
  assert.match(first!, /^udp-tunnel: /);
  assert.match(first!, re);
  if (pointer) assert.match(second!, /^Run 'udp-tunnel( \w+)? --help' for usage\.$/);
  else assert.equal(second, '');
  assert.deepEqual(rest.filter((l) => l !== ''), []);
  assert.equal(r.stdout, '');
  return first!;
}

const PROXY = ['--proxy', 'http://127.0.0.1:4433'];
const TARGET = ['--target', '127.0.0.1:53'];

describe('CLI option mistakes (exit 2, a message that says what to do)', () => {
  it('connect --max-sessions 0: out of range, and 0 would turn it off', async () => {
    assertUsage(await cli(['connect', ...PROXY, ...TARGET, '--max-sessions', '0']), /--max-sessions: '0' is out of range: it must be 1\.\.\d+ \(0 would turn it off\)$/);
  });

  it('connect --max-sessions abc: not a number', async () => {
    assertUsage(await cli(['connect', ...PROXY, ...TARGET, '--max-sessions', 'abc']), /--max-sessions: 'abc' is not a number$/);
  });

  it('connect --max-sessions -5: out of range (not taken for a flag)', async () => {
    assertUsage(await cli(['connect', ...PROXY, ...TARGET, '--max-sessions', '-5']), /--max-sessions: '-5' is out of range: it must be 1\.\.\d+$/);
  });

  it('connect --max-buffered-datagrams 1.5: not a whole number', async () => {
    assertUsage(await cli(['connect', ...PROXY, ...TARGET, '--max-buffered-datagrams', '1.5']), /--max-buffered-datagrams: '1\.5' is not a whole number$/);
  });

  it('connect --proxy with port 99999: names the port as out of range', async () => {
    assertUsage(await cli(['connect', '--proxy', 'http://127.0.0.1:99999', ...TARGET]), /--proxy .*port 99999, out of range/, false);
  });

  it('connect --proxy without a scheme: suggests http:// and https://', async () => {
    const line = assertUsage(await cli(['connect', '--proxy', '127.0.0.1:4433', ...TARGET]), /--proxy '127\.0\.0\.1:4433' has no scheme/, false);
    assert.match(line, /http:\/\/127\.0\.0\.1:4433/);
    assert.match(line, /https:\/\/127\.0\.0\.1:4433/);
  });

  it('connect --mode post --target: names both flags', async () => {
    const line = assertUsage(await cli(['connect', ...PROXY, '--mode', 'post', ...TARGET]), /--target does not apply with --mode post/);
    assert.match(line, /drop --target/);
  });

  it('connect --taget: did you mean --target?', async () => {
    assertUsage(await cli(['connect', ...PROXY, '--taget', '127.0.0.1:53']), /unknown option --taget; did you mean --target\?$/);
  });

  it('connect --bogus-flag: reported once, as typed', async () => {
    const r = await cli(['connect', ...PROXY, ...TARGET, '--bogus-flag']);
    assertUsage(r, /unknown option --bogus-flag$/);
    assert.equal(r.stderr.match(/bogus/gi)?.length, 1, r.stderr);
  });

  it('connect --version: refused, pointing to udp-tunnel --version', async () => {
    const r = await cli(['connect', '--version']);
    assertUsage(r, /--version is not an option of connect; 'udp-tunnel --version' prints the version$/);
  });

  it('conect: did you mean connect?', async () => {
    const r = await cli(['conect', ...PROXY]);
    assertUsage(r, /unknown command 'conect'; did you mean connect\?$/);
    assert.match(r.stderr, /Run 'udp-tunnel --help' for usage/);
  });

  it('a usage error under --json is one error event on stdout, before exit 2', async () => {
    const r = await cli(['connect', '--json', ...PROXY, ...TARGET, '--max-sessions', '0']);
    assert.equal(r.code, 2);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, r.stdout);
    const event = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(event['event'], 'error');
    assert.equal(event['exitCode'], 2);
    assert.equal(typeof event['code'], 'string');
    assert.match(event['message'] as string, /^--max-sessions: '0' is out of range/);
    assert.match(r.stderr, /--max-sessions: '0' is out of range/);
  });

  it('serve --auth-failure-burst without credentials: names the flag', async () => {
    assertUsage(await cli(['serve', '--auth-failure-burst', '5']), /--auth-failure-burst has no effect without credentials/);
  });

  it('serve --max-capsule 1.5x: not a size', async () => {
    assertUsage(await cli(['serve', '--max-capsule', '1.5x']), /--max-capsule: '1\.5x' is not a size \(examples: 1500, 64KiB, 1MB\)$/);
  });

  it('bench --rate with --inflight: the two loops exclude each other', async () => {
    assertUsage(await cli(['bench', '--rate', '10', '--inflight', '2']), /--rate \(open loop\) and --inflight \(closed loop\) exclude each other$/);
  });

  it('bench --target without --proxy: refused', async () => {
    assertUsage(await cli(['bench', '--target', '127.0.0.1:7']), /--target goes with --proxy/);
  });
});

describe('CLI config files', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-cli-config-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('an unknown key in --config is refused with a suggestion', async () => {
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, 'proxy: http://127.0.0.1:4433\nmax-sesions: 5\n');
    const line = assertUsage(await cli(['connect', '--config', file]), /unknown key 'max-sesions'; did you mean max-sessions\?$/);
    assert.ok(line.includes(file), line);
  });

  it('--print-config shows flag over env over file, where each came from, and redacts the token', async () => {
    const file = join(dir, 'connect.yaml');
    writeFileSync(file, 'proxy: http://127.0.0.1:1111\ntarget: 127.0.0.1:53\nmax-sessions: 5\nidle-timeout: 2m\n');
    const env = { UDP_TUNNEL_PROXY: 'http://127.0.0.1:2222', UDP_TUNNEL_TOKEN: 'cli-s3cret-token' };
    const r = await cli(['connect', '--config', file, '--max-sessions', '9', '--print-config'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('cli-s3cret-token'), r.stdout);
    assert.ok(!r.stderr.includes('cli-s3cret-token'), r.stderr);
    // --proxy is a list (several proxies fail over): one item, from the environment.
    assert.match(r.stdout, /^proxy: {2}# \$UDP_TUNNEL_PROXY\n {2}- http:\/\/127\.0\.0\.1:2222$/m);
    assert.match(r.stdout, /^max-sessions: 9 {2}# --max-sessions$/m);
    assert.match(r.stdout, /^target: 127\.0\.0\.1:53 {2}# .*connect\.yaml$/m);
    assert.match(r.stdout, /^idle-timeout: 2m {2}# .*connect\.yaml$/m);
    assert.match(r.stdout, /^token: <redacted> {2}# \$UDP_TUNNEL_TOKEN$/m);
    const yaml = YAML.parse(r.stdout) as Record<string, unknown>;
    assert.equal(yaml['max-sessions'], 9);
    assert.equal(yaml['mode'], 'connect-udp');

    const json = await cli(['connect', '--config', file, '--max-sessions', '9', '--print-config', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1);
    const event = JSON.parse(lines[0]!) as { event: string; command: string; options: Record<string, unknown> };
    assert.equal(event.event, 'config');
    assert.equal(event.command, 'connect');
    assert.deepEqual(event.options['proxy'], ['http://127.0.0.1:2222']);
    assert.equal(event.options['max-sessions'], 9);
    assert.equal(event.options['idle-timeout'], 120_000);
    assert.equal(event.options['token'], '<redacted>');
    assert.ok(!json.stdout.includes('cli-s3cret-token'));
  });
});

describe('CLI help and version', () => {
  it('udp-tunnel --help is at most 40 lines within 100 columns', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    const lines = r.stdout.trimEnd().split('\n');
    assert.ok(lines.length <= 40, `${lines.length} lines`);
    for (const line of lines) assert.ok([...line].length <= 100, line);
    for (const cmd of ['connect', 'serve', 'inspect', 'bench', 'demo']) assert.match(r.stdout, new RegExp(`^ {2}${cmd} `, 'm'));
  });

  it('udp-tunnel --version prints the package.json version', async () => {
    const r = await cli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
    assert.equal(r.stderr, '');
  });

  it('connect --help fits 100 columns and points to --help-all', async () => {
    const r = await cli(['connect', '--help']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trimEnd().split('\n');
    assert.ok(lines.length <= 45, `${lines.length} lines`);
    for (const line of lines) assert.ok([...line].length <= 100, `${[...line].length}: ${line}`);
    assert.match(r.stdout, /udp-tunnel connect --help-all/);
    assert.doesNotMatch(r.stdout, /--max-udp-send-queue/, 'an advanced option is left to --help-all');
  });

  it('connect --help-all lists the advanced options too', async () => {
    const r = await cli(['connect', '--help-all']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^ {6}--max-udp-send-queue N/m);
    assert.match(r.stdout, /env UDP_TUNNEL_PROXY/);
    for (const line of r.stdout.split('\n')) assert.ok([...line].length <= 100, line);
  });

  it('help wins over a bad value given with it', async () => {
    const r = await cli(['serve', '--max-capsule', '1.5x', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: udp-tunnel serve/);
  });
});
