import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Path of the real CLI entry (runs the compiled dist/). */
export const BIN = fileURLToPath(new URL('../../../bin/udp-tunnel.js', import.meta.url));

/** Result of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for CLI runs: no colour decisions inherited from the test runner. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['FORCE_COLOR'];
  delete env['NO_COLOR'];
  return { ...env, ...extra };
}

/** Runs `udp-tunnel ARGS` to completion, feeding `input` on stdin. */
export function runCli(args: string[], options: { input?: string | Buffer; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`udp-tunnel ${args.join(' ')} did not finish; stderr: ${stderr}`));
    }, options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A long-running CLI process (serve, connect, the relay) with its output collected. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout JSON line whose `event` is `name`. */
  waitEvent(name: string, ms?: number): Promise<Record<string, unknown>>;
  /** Sends SIGINT and resolves with the exit code. */
  stop(ms?: number): Promise<number | null>;
}

/** Starts `udp-tunnel ARGS` in the background. */
export function startCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const listeners: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitEvent: (name, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          for (const line of out.split('\n')) {
            if (!line.startsWith('{')) continue;
            try {
              const v = JSON.parse(line) as Record<string, unknown>;
              if (v['event'] === name) {
                resolve(v);
                return true;
              }
            } catch {
              /* a partial line */
            }
          }
          return false;
        };
        if (check()) return;
        const timer = setTimeout(() => reject(new Error(`no '${name}' event from udp-tunnel ${args.join(' ')}; stderr: ${err}`)), ms);
        const l = (): void => {
          if (check()) {
            clearTimeout(timer);
            listeners.splice(listeners.indexOf(l), 1);
          }
        };
        listeners.push(l);
        child.once('exit', () => {
          clearTimeout(timer);
          if (!check()) reject(new Error(`udp-tunnel ${args.join(' ')} exited; stderr: ${err}`));
        });
      }),
    stop: async (ms = 10_000) => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
