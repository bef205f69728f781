import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Path of the real bin script (it runs the compiled dist/). */
export const BIN = fileURLToPath(new URL('../../../bin/udp-tunnel.js', import.meta.url));

/** Result of a finished CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a Node script to completion, with the environment's colour settings removed unless `env` sets them. */
export function runScript(script: string, args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: cleanEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the CLI to completion. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 20_000): Promise<CliResult> {
  return runScript(BIN, args, env, timeoutMs);
}

/** A long-running CLI process whose stdout NDJSON lines are collected. */
export interface CliProcess {
  child: ChildProcessWithoutNullStreams;
  lines: Record<string, unknown>[];
  stderr: () => string;
  /** Resolves with the first JSON line whose `event` equals `name`. */
  waitForEvent(name: string, ms?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the CLI with --json expected; parses each stdout line as JSON. `fdLimit` runs it under `ulimit -n`. */
export function startCli(args: string[], env: Record<string, string | undefined> = {}, options: { fdLimit?: number } = {}): CliProcess {
  const child =
    options.fdLimit === undefined
      ? spawn(process.execPath, [BIN, ...args], { env: cleanEnv(env) })
      : spawn('bash', ['-c', 'ulimit -n "$0" && exec "$@"', String(options.fdLimit), process.execPath, BIN, ...args], { env: cleanEnv(env) });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  let err = '';
  let waiters: { name: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  child.stderr.on('data', (d) => (err += d));
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      const obj = JSON.parse(line) as Record<string, unknown>;
      lines.push(obj);
      waiters = waiters.filter((w) => {
        if (w.name === obj['event']) {
          w.resolve(obj);
          return false;
        }
        return true;
      });
    }
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    child,
    lines,
    stderr: () => err,
    waitForEvent: (name, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const found = lines.find((l) => l['event'] === name);
        if (found) return resolve(found);
        const t = setTimeout(() => reject(new Error(`no '${name}' event within ${ms} ms; stderr: ${err}`)), ms);
        waiters.push({
          name,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      }),
    stop: (signal = 'SIGINT') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['FORCE_COLOR'];
  delete env['NO_COLOR'];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Matches ANSI escape sequences. */
export const ANSI_RE = /\u001b\[[0-9;]*m/;
