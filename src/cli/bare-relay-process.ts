import { readFileSync } from 'node:fs';
import { parseHostPort } from '../tunnel/address.js';
import { ErrorCodes, UdpTunnelError, isUdpTunnelError } from '../tunnel/errors.js';
import { RelayBack, RelayFront } from '../bench/bare-relay.js';
import { resolveUdpHost } from '../bench/resolve-host.js';
import { exitCodeFor, flagMessage } from './errors.js';

// Process entry of the bench's bare relays (process isolation), deliberately not a CLI command: the relays are a
// measuring aid, not a product. Like a tunnel component started with `--json`, it speaks NDJSON on stdout, which
// is how the bench launcher reads it: {"event":"listening",...} once bound, {"event":"session-close",...} per peer
// or connection, and {"event":"shutdown","counters":{...}} after SIGTERM or SIGINT.
//
//   node bare-relay-process.js front --listen HOST:PORT --back HOST:PORT [--ca FILE]
//   node bare-relay-process.js back  --listen HOST:PORT --target HOST:PORT [--cert FILE --key FILE]
//
// Exit code 0 after a clean stop, 2 for bad arguments, 1 when it cannot start.

const USAGE_TEXT =
  'usage: bare-relay-process front --listen HOST:PORT --back HOST:PORT [--ca FILE]\n' +
  '       bare-relay-process back --listen HOST:PORT --target HOST:PORT [--cert FILE --key FILE]';

function emit(event: string, fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...fields })}\n`);
}

function usage(message: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${message}\n${USAGE_TEXT}`);
}

function parseFlags(argv: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]!;
    const value = argv[i + 1];
    if (!name.startsWith('--') || value === undefined) throw usage(`bad argument "${name}"`);
    if (flags.has(name)) throw usage(`${name} given twice`);
    flags.set(name, value);
  }
  return flags;
}

async function main(argv: readonly string[]): Promise<void> {
  const role = argv[0];
  if (role !== 'front' && role !== 'back') throw usage('the first argument must be front or back');
  const flags = parseFlags(argv.slice(1));
  const allowed = role === 'front' ? ['--listen', '--back', '--ca'] : ['--listen', '--target', '--cert', '--key'];
  for (const k of flags.keys()) if (!allowed.includes(k)) throw usage(`${k} does not apply to ${role}`);
  const need = (k: string): string => {
    const v = flags.get(k);
    if (v === undefined) throw usage(`${role} needs ${k}`);
    return v;
  };
  const listen = parseHostPort(need('--listen'), { allowPortZero: true, what: '--listen' });
  const host = listen.host;
  let close: () => Promise<Record<string, unknown>>;
  const onClose = (stats: object): void => emit('session-close', stats as Record<string, unknown>);
  if (role === 'front') {
    const back = parseHostPort(need('--back'), { what: '--back' });
    const ca = flags.get('--ca');
    const front = new RelayFront({
      host,
      port: listen.port,
      back: { host: (await resolveUdpHost(back.host)).address, port: back.port },
      ...(ca !== undefined ? { tls: { ca: readFileSync(ca, 'utf8') } } : {}),
    });
    front.on('session-close', onClose);
    front.on('error', () => {});
    const a = await front.start();
    emit('listening', { role: 'relay-front', address: a.address, port: a.port, family: a.family });
    close = async () => {
      await front.close();
      return { ...front.counters };
    };
  } else {
    const target = parseHostPort(need('--target'), { what: '--target' });
    const cert = flags.get('--cert');
    const key = flags.get('--key');
    if ((cert === undefined) !== (key === undefined)) throw usage('--cert and --key go together');
    const relay = new RelayBack({
      host,
      port: listen.port,
      target: { host: (await resolveUdpHost(target.host)).address, port: target.port },
      ...(cert !== undefined && key !== undefined ? { tls: { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') } } : {}),
    });
    relay.on('session-close', onClose);
    const a = await relay.listen();
    emit('listening', { role: 'relay-back', address: a.address, port: a.port, family: a.family });
    close = async () => {
      await relay.close();
      return { ...relay.counters };
    };
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      void close().then((counters) => {
        emit('shutdown', { signal, counters });
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

main(process.argv.slice(2)).then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    const message = isUdpTunnelError(err) ? `${flagMessage(err)} [${err.code}]` : ((err as Error)?.message ?? String(err));
    process.stderr.write(`bare-relay-process: ${message}\n`);
    process.exitCode = isUdpTunnelError(err) ? exitCodeFor(err.code) : 1;
  },
);
