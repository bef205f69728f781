import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BLOCKED, guarding } from '../helpers/no-network.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GUARD = './dist/test/helpers/no-network.js';
const SELF = join(ROOT, 'test', 'unit', 'no-network.test.ts');

/** Modules a unit test must not import: each exists to open sockets or start processes or workers. */
const FORBIDDEN = [
  /^node:(dgram|tls|https|http2|child_process|worker_threads|cluster)$/,
  /\/helpers\/(net|tunnel|stack|h2|h2-peer|h2-raw-peer|tcp-peer|transport-matrix|cli|dns-server|fd-limit-server|[a-z-]+-worker)\.js$/,
];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

const blockedError = (err: unknown): boolean => err instanceof Error && err.message.startsWith(BLOCKED);

describe('test/helpers/no-network: the unit tier opens no sockets and starts no servers, processes or workers', () => {
  it('is active in processes running a file under dist/test/unit/', () => {
    assert.equal(guarding, true);
  });

  it('npm test and npm run test:unit preload the guard', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const name of ['test', 'test:unit']) assert.ok(scripts[name]?.includes(`--import ${GUARD}`), `${name}: ${scripts[name]}`);
  });

  it('makes listening, connecting and binding throw, for TCP, HTTP, HTTP/2 and UDP', () => {
    const server = net.createServer();
    const web = http.createServer();
    try {
      assert.throws(() => server.listen(0, '127.0.0.1'), blockedError);
      assert.throws(() => web.listen(0, '127.0.0.1'), blockedError);
      assert.throws(() => http2.createServer().listen(0, '127.0.0.1'), blockedError);
      assert.throws(() => net.connect(9, '127.0.0.1'), blockedError);
      assert.throws(() => http2.connect('http://127.0.0.1:9'), blockedError);
      assert.throws(() => dgram.createSocket('udp4'), blockedError);
      assert.throws(() => new (dgram.Socket as unknown as new (type: string) => dgram.Socket)('udp4').bind(0, '127.0.0.1'), blockedError);
    } finally {
      server.close();
      web.close();
    }
  });

  it('makes name resolution, child processes and workers throw', () => {
    assert.throws(() => dns.lookup('localhost', () => {}), blockedError);
    assert.throws(() => dns.promises.lookup('localhost'), blockedError);
    assert.throws(() => new dns.promises.Resolver().resolve4('localhost'), blockedError);
    assert.throws(() => childProcess.spawn(process.execPath, ['-e', '']), blockedError);
    assert.throws(() => childProcess.spawnSync(process.execPath, ['-e', '']), blockedError);
    assert.throws(() => childProcess.execFile(process.execPath, ['-e', '']), blockedError);
    assert.throws(() => new Worker('', { eval: true }), blockedError);
  });

  it('no file under test/unit/ imports a module that exists to open sockets or start processes', () => {
    const unit = join(ROOT, 'test', 'unit');
    const offenders: string[] = [];
    for (const file of sources(unit)) {
      if (file === SELF) continue; // it imports those modules to check that the guard blocks them
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(/^import[^'"]*['"]([^'"]+)['"]/gm)) {
        if (FORBIDDEN.some((re) => re.test(spec!))) offenders.push(`${relative(ROOT, file)}: ${spec}`);
      }
    }
    assert.deepEqual(offenders, []);
  });
});
