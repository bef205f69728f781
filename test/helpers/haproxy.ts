import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

// HAProxy (the Debian package `haproxy`) run in the foreground for the scale-out tests: a load balancer we do not
// write, in front of several real serve processes.

/** The HAProxy binary: on PATH, else where Debian installs it (/usr/sbin is not on every user's PATH). */
let haproxyBin = 'haproxy';

/** Why the HAProxy tests cannot run here (`haproxy -v` fails), or null when HAProxy is installed. */
export function haproxyMissing(): string | null {
  let why = '';
  for (const bin of ['haproxy', '/usr/sbin/haproxy']) {
    const r = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 10_000 });
    if (!r.error && r.status === 0) {
      haproxyBin = bin;
      return null;
    }
    why ||= r.error ? r.error.message : `exit ${r.status}: ${r.stderr.trim()}`;
  }
  return `haproxy not installed (haproxy -v: ${why}; apt-get install haproxy)`;
}

/** `haproxy -c -f FILE`: checks a configuration without starting; resolves with the exit code and output. */
export function checkHaproxyConfig(file: string): { code: number | null; output: string } {
  const r = spawnSync(haproxyBin, ['-c', '-f', file], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A backend server line's address. */
export interface Backend {
  name: string;
  port: number;
}

/** A running HAProxy. */
export interface Haproxy {
  /** The loopback port of the frontend. */
  port: number;
  child: ChildProcess;
  stderr(): string;
  /** `show stat` on the admin socket: each backend server's status (UP, DOWN, MAINT, NOLB ...). */
  serverStatus(): Promise<Map<string, string>>;
  /** Sends one command to the admin socket and resolves with the answer. */
  admin(command: string): Promise<string>;
  /** Stops HAProxy (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * The configuration of the test: TCP mode, round robin, and plain TCP health checks every 100 ms (one failure takes
 * a server out, one success puts it back), so a killed serve leaves the rotation quickly.
 */
export function testConfig(port: number, backends: Backend[], adminSocket: string): string {
  return [
    'global',
    '  nbthread 1',
    `  stats socket ${adminSocket} mode 600 level admin`,
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 1h',
    '  timeout server 1h',
    // A connection to a serve that died before the health check noticed is retried on another one.
    '  retries 2',
    '  option redispatch 1',
    'frontend udp_tunnel',
    `  bind 127.0.0.1:${port}`,
    '  default_backend serves',
    'backend serves',
    '  balance roundrobin',
    ...backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check inter 100ms fall 1 rise 1`),
    '',
  ].join('\n');
}

/** A loopback TCP port that was free a moment ago (listen on port 0, read it, close). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Sends one command to HAProxy's admin socket and resolves with the answer. */
function adminCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let answer = '';
    c.on('data', (d: Buffer) => (answer += d.toString()));
    c.once('error', reject);
    c.once('close', () => resolve(answer));
    c.end(`${command}\n`);
  });
}

/**
 * Resolves once HAProxy answers on its admin socket, which it opens after binding its frontends (asking the frontend
 * itself would open a connection to a backend and move the round robin); rejects when `exited()` or after `ms`.
 */
async function waitReady(adminSocket: string, exited: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (exited()) throw new Error('haproxy exited');
    const ok = await adminCommand(adminSocket, 'show info').then(
      (a) => a.includes('Pid:'),
      () => false,
    );
    if (ok) return;
    if (Date.now() > end) throw new Error(`haproxy did not answer on its admin socket within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts HAProxy in front of `backends` on a free loopback port (another port when that one was taken meanwhile). */
export async function startHaproxy(backends: Backend[]): Promise<Haproxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'udp-tunnel-haproxy-'));
  const adminSocket = path.join(dir, 'admin.sock');
  const cfg = path.join(dir, 'haproxy.cfg');
  let lastError = '';
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort();
    writeFileSync(cfg, testConfig(port, backends, adminSocket));
    // -db: foreground, no daemon; -f: this configuration only.
    const child = spawn(haproxyBin, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (err += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    let exited = false;
    const closed = new Promise<void>((r) =>
      child.once('close', () => {
        exited = true;
        r();
      }),
    );
    child.once('error', (e) => (err += String(e)));
    try {
      await waitReady(adminSocket, () => exited, 10_000);
    } catch (e) {
      child.kill('SIGKILL');
      await closed;
      lastError = `${(e as Error).message}: ${err}`;
      // Someone else took the port between our check and HAProxy's bind: try another one.
      if (/cannot bind|Address already in use/i.test(err)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(lastError);
    }
    const admin = (command: string): Promise<string> => adminCommand(adminSocket, command);
    return {
      port,
      child,
      stderr: () => err,
      admin,
      serverStatus: async () => {
        const csv = (await admin('show stat')).trim().split('\n');
        const header = csv[0]!.replace(/^# /, '').split(',');
        const px = header.indexOf('pxname');
        const sv = header.indexOf('svname');
        const status = header.indexOf('status');
        const out = new Map<string, string>();
        for (const line of csv.slice(1)) {
          const f = line.split(',');
          if (f[px] === 'serves' && f[sv] !== 'BACKEND') out.set(f[sv]!, f[status]!);
        }
        return out;
      },
      stop: async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await closed;
          clearTimeout(t);
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`haproxy could not bind a free port in 5 attempts: ${lastError}`);
}
