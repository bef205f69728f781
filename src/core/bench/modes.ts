import type { ProxyConfig } from '../connect-config.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import type { TunnelServerOptions } from '../server.js';

/**
 * How the bench runs one tunnel transport. A new transport plugs in by adding one entry: the flags that select it
 * on `serve` and `connect` (process isolation) and the matching option fields (worker isolation, which builds the
 * client with buildTransport and the server with TunnelServer directly). Only plain data, so it crosses threads.
 */
export interface BenchModeSpec {
  /** The `--mode` value. */
  readonly name: string;
  /** One line for --help and the report. */
  readonly describe: string;
  /** Extra `udp-tunnel serve` flags. */
  readonly serveArgs: readonly string[];
  /** Extra `udp-tunnel connect` flags. */
  readonly connectArgs: readonly string[];
  /** Extra fields of the ProxyConfig given to buildTransport. */
  readonly proxyConfig: Readonly<Partial<ProxyConfig>>;
  /** Extra TunnelServer options. */
  readonly serverOptions: Readonly<Partial<TunnelServerOptions>>;
  /**
   * What stands where serve and connect sit: the tunnel (absent = 'tunnel'), or the bare relays of bare-relay.ts,
   * a reference floor that is not a tunnel (the serve/connect fields above are then unused).
   */
  readonly kind?: BenchModeKind;
}

/** What a bench mode runs in serve's and connect's places. */
export type BenchModeKind = 'tunnel' | 'bare-relay';

/** The transports the bench can drive, in --help order. */
export const BENCH_MODES: readonly BenchModeSpec[] = [
  {
    name: 'connect-udp',
    describe: 'CONNECT-UDP over HTTP/2 extended CONNECT (RFC 9298 §3.4, RFC 8441)',
    serveArgs: [],
    connectArgs: [],
    proxyConfig: {},
    serverOptions: {},
  },
  {
    name: 'connect-udp-h1',
    describe: 'CONNECT-UDP over HTTP/1.1 Upgrade (RFC 9298 §3.2), one TCP connection per session',
    serveArgs: [],
    connectArgs: ['--http', '1.1'],
    proxyConfig: { http: '1.1' },
    serverOptions: {},
  },
  {
    name: 'bare-relay',
    describe:
      'NOT a tunnel, a reference floor: two bare Node relays where connect and serve sit, one TCP connection per peer, 2-byte length-prefixed frames, no HTTP',
    serveArgs: [],
    connectArgs: [],
    proxyConfig: {},
    serverOptions: {},
    kind: 'bare-relay',
  },
];

/** Name of the default mode. */
export const DEFAULT_BENCH_MODE = 'connect-udp';

/** What a mode runs in serve's and connect's places. */
export function benchModeKind(mode: BenchModeSpec): BenchModeKind {
  return mode.kind ?? 'tunnel';
}

/** Looks up a mode by name; throws INVALID_OPTION listing the known ones. */
export function benchMode(name: string): BenchModeSpec {
  const m = BENCH_MODES.find((x) => x.name === name);
  if (m === undefined) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `unknown bench mode "${name}" (known: ${BENCH_MODES.map((x) => x.name).join(', ')})`, {
      option: 'mode',
      value: name,
    });
  }
  return m;
}
