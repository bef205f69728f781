// The unit tier's guard. `npm test` and `npm run test:unit` preload this module into every test process
// (`node --test --import ./dist/test/helpers/no-network.js`); in a process whose test file lies under
// dist/test/unit/ it makes every way to open a socket, resolve a name, start a server, a child process or a worker
// throw, so a unit test that needs one fails loudly instead of quietly becoming an integration test.
// It patches the shared prototypes (net.Socket, net.Server, dgram.Socket, ChildProcess), which every higher-level
// API (http, http2, tls, dgram.createSocket, exec*) goes through, and the module-level functions that do not.
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import workerThreads from 'node:worker_threads';

/** Directory whose test files run under the guard. */
export const UNIT_DIR = fileURLToPath(new URL('../unit/', import.meta.url));

/** Start of the message every blocked call throws with. */
export const BLOCKED = 'unit tests open no sockets and start no servers, processes or workers';

/** Whether the guard is active in this process. */
export let guarding = false;

type AnyFunction = (...args: unknown[]) => unknown;

function blocked(what: string): AnyFunction {
  return function blockedCall(): never {
    throw new Error(`${BLOCKED}: ${what} was called from a test under test/unit/ (move the test to test/integration/)`);
  };
}

function patch(target: object, names: readonly string[], prefix: string): void {
  for (const name of names) {
    if (typeof (target as Record<string, unknown>)[name] === 'function') (target as Record<string, unknown>)[name] = blocked(`${prefix}${name}()`);
  }
}

/** Makes every socket, server, process and worker API throw in this process. */
function installGuard(): void {
  guarding = true;
  patch(net.Socket.prototype, ['connect'], 'net.Socket#');
  patch(net.Server.prototype, ['listen'], 'net.Server#');
  patch(dgram.Socket.prototype, ['bind', 'connect', 'send'], 'dgram.Socket#');
  patch(dgram, ['createSocket'], 'dgram.');
  patch(childProcess.ChildProcess.prototype, ['spawn'], 'ChildProcess#');
  patch(childProcess, ['exec', 'execFile', 'execFileSync', 'execSync', 'fork', 'spawn', 'spawnSync'], 'child_process.');
  const dnsNames = (o: object): string[] => Object.getOwnPropertyNames(o).filter((n) => /^(lookup|resolve|reverse)/.test(n));
  for (const [target, prefix] of [
    [dns, 'dns.'],
    [dns.promises, 'dns.promises.'],
    [dns.Resolver.prototype, 'dns.Resolver#'],
    [dns.promises.Resolver.prototype, 'dns.promises.Resolver#'],
  ] as const) {
    patch(target, dnsNames(target), prefix);
  }
  const stop = blocked('new worker_threads.Worker');
  (workerThreads as { Worker: unknown }).Worker = class BlockedWorker {
    constructor() {
      stop();
    }
  };
  // Named ESM imports of builtins (`import { spawn } from 'node:child_process'`) are copies; this refreshes them.
  syncBuiltinESMExports();
}

const testFile = process.argv[1];
if (testFile !== undefined && testFile.startsWith(UNIT_DIR)) installGuard();
