import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// The one harness for tests that run the real CLI (or another compiled entry script) as a child process.

/** Path of the real bin script (it runs the compiled dist/); the only place tests name it. */
export const BIN = fileURLToPath(new URL('../../../bin/udp-tunnel.js', import.meta.url));

/** Matches ANSI escape sequences. */
export const ANSI_RE = /\u001b\[[0-9;]*m/;

/** Result of a finished run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment changes for a child: a string sets the variable, undefined removes it. */
export type EnvPatch = Record<string, string | undefined>;

/** Options of a run to completion. */
export interface RunOptions {
  env?: EnvPatch;
  /** Written to stdin, which is then closed (it is closed at once without it). */
  input?: string | Buffer;
  /** The run is killed and the promise rejected after this long (default 20 s). */
  timeoutMs?: number;
}

/** The test runner's environment without its colour decisions (FORCE_COLOR, NO_COLOR), then `patch` applied. */
export function cliEnv(patch: EnvPatch = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['FORCE_COLOR'];
  delete env['NO_COLOR'];
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Runs a Node script to completion and collects its output. */
export function runScript(script: string, args: string[], options: RunOptions = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A child that exits without reading its stdin must not fail the run.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Runs `udp-tunnel ARGS` to completion. */
export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runScript(BIN, args, options);
}

/** Options of a long-running CLI process. */
export interface StartOptions {
  env?: EnvPatch;
  /** Runs the process under `ulimit -n fdLimit`. */
  fdLimit?: number;
}

/** A long-running CLI process (serve, connect, the inspect relay) with its output collected. */
export interface CliProcess {
  child: ChildProcess;
  /** Each stdout line parsed as JSON; a line that is not JSON is kept as `{ text }`, so a check on `event` catches it. */
  lines: Record<string, unknown>[];
  /** All of stdout so far. */
  stdout(): string;
  /** All of stderr so far. */
  stderr(): string;
  /** Resolves with the first JSON line whose `event` is `name`; rejects after `ms` or when the process ends first. */
  waitForEvent(name: string, ms?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` (SIGKILL after `killAfterMs`) and resolves with the exit code once its output is read. */
  stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | null>;
}

/** Starts `udp-tunnel ARGS` in the background, with stdin closed. */
export function startCli(args: string[], options: StartOptions = {}): CliProcess {
  const env = cliEnv(options.env);
  const child =
    options.fdLimit === undefined
      ? spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('bash', ['-c', 'ulimit -n "$0" && exec "$@"', String(options.fdLimit), process.execPath, BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let out = '';
  let err = '';
  let partial = '';
  const listeners = new Set<() => void>();
  const addLine = (line: string): void => {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    lines.push(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { text: line });
  };
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString();
    out += text;
    partial += text;
    let i: number;
    while ((i = partial.indexOf('\n')) >= 0) {
      addLine(partial.slice(0, i));
      partial = partial.slice(i + 1);
    }
    for (const l of [...listeners]) l();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let ended = false;
  const closed = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      addLine(partial);
      partial = '';
      ended = true;
      for (const l of [...listeners]) l();
      resolve(code);
    }),
  );
  const what = `udp-tunnel ${args.join(' ')}`;
  return {
    child,
    lines,
    stdout: () => out,
    stderr: () => err,
    waitForEvent: (name, ms = 10_000) =>
      new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const check = (): void => {
          const found = lines.find((l) => l['event'] === name);
          if (found === undefined && !ended) return;
          listeners.delete(check);
          clearTimeout(timer);
          if (found !== undefined) resolve(found);
          else reject(new Error(`${what} exited before a '${name}' event; stderr: ${err}`));
        };
        listeners.add(check);
        timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no '${name}' event from ${what} within ${ms} ms; stderr: ${err}`));
        }, ms);
        check();
      }),
    stop: async (signal = 'SIGINT', killAfterMs = 10_000) => {
      if (!ended && child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      const code = await closed;
      clearTimeout(timer);
      return code;
    },
  };
}
