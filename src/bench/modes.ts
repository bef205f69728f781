import { formatHostPort } from '../tunnel/address.js';
import type { HostPort } from '../tunnel/address.js';
import type { ProxyConfig } from '../tunnel/client-config.js';
import { DEFAULT_MAX_BIND_CONTEXTS } from '../tunnel/bind-contexts.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { ExposerOptions } from '../tunnel/expose.js';
import type { TunnelServerOptions } from '../tunnel/server/tunnel-server.js';

/** What a run knows when it starts serve and connect: the UDP echo the tunnel reaches, and the POST request path. */
export interface BenchModeContext {
  /** The UDP echo: the bench's own, or the `--target` an external proxy reaches. */
  readonly target: HostPort;
  /** Request path of modes whose request names no target (`usesPostPath`); the proxy routes it to `target`. */
  readonly postPath: string;
}

/**
 * How the bench runs one tunnel transport. A new transport plugs in by adding one entry: the flags that select it
 * on `serve` and `connect` (process isolation) and the matching option fields (worker isolation, which builds the
 * client with buildTransport and the server with TunnelServer directly). Each is a pure function of the run's
 * context, because some transports (POST) route a path to the echo, whose port is known only at run time. Only the
 * mode name crosses threads: a tunnel worker looks the entry up again and derives its options itself.
 */
export interface BenchModeSpec {
  /** The `--mode` value. */
  readonly name: string;
  /** One line for --help and the report. */
  readonly describe: string;
  /** The request carries `postPath` instead of the target: serve needs a route, an external proxy must have one. */
  readonly usesPostPath: boolean;
  /** Extra `udp-tunnel serve` flags. */
  serveArgs(ctx: BenchModeContext): readonly string[];
  /** Extra `udp-tunnel connect` flags. */
  connectArgs(ctx: BenchModeContext): readonly string[];
  /** Extra fields of the ProxyConfig given to buildTransport. */
  proxyConfig(ctx: BenchModeContext): Readonly<Partial<ProxyConfig>>;
  /** Extra TunnelServer options. */
  serverOptions(ctx: BenchModeContext): Readonly<Partial<TunnelServerOptions>>;
  /**
   * What stands where serve and connect sit: the tunnel (absent = 'tunnel'), or the bare relays of bare-relay.ts,
   * a reference floor that is not a tunnel (the serve/connect fields above are then unused).
   */
  readonly kind?: BenchModeKind;
  /** The tunnel runs over HTTP/1.1 (for the report's header). */
  readonly http1?: boolean;
  /**
   * Where the load enters the tunnel (absent = 'listen'). 'listen': connect listens on a local port and forwards to
   * the echo; each generator flow is a local peer with a tunnel session of its own. 'expose': connect exposes the
   * echo through one bound tunnel (`connect --expose`, draft-ietf-masque-connect-udp-listen) and the generator sends
   * to the public address serve bound; each generator flow is a remote peer of that one tunnel.
   */
  readonly entry?: BenchEntry;
  /** With entry 'expose': extra Exposer options (worker isolation), the counterpart of `connectArgs`. */
  readonly exposerOptions?: Readonly<Partial<Pick<ExposerOptions, 'compress'>>>;
  /**
   * The only isolation the mode runs with, and why (it needs a library option that has no command-line flag yet);
   * absent = both.
   */
  readonly onlyIsolation?: { readonly isolation: 'process' | 'worker'; readonly why: string };
  /**
   * Limits of the idle-session probe (absent = none): the most sessions it opens, and how many it opens at once
   * before waiting for their replies.
   */
  readonly idleProbe?: { readonly maxSessions: number; readonly burst: number };
}

/**
 * The idle-session probe of a bound tunnel: at most as many remote peers as a tunnel holds compressed contexts (the
 * uncompressed one takes one), so every peer measured has one; opened 32 at a time, so each step's
 * peers have their replies (and registrations answered) before the next step opens more.
 */
const BOUND_IDLE_PROBE = { maxSessions: DEFAULT_MAX_BIND_CONTEXTS - 1, burst: 32 } as const;

/** What a bench mode runs in serve's and connect's places. */
export type BenchModeKind = 'tunnel' | 'bare-relay';

/** Where a bench mode's load enters the tunnel: connect's local port, or the public port of a bound tunnel. */
export type BenchEntry = 'listen' | 'expose';

/** Request path of POST mode when --post-path is not given. */
export const DEFAULT_BENCH_POST_PATH = '/bench';

/** The transports the bench can drive, in --help order. */
export const BENCH_MODES: readonly BenchModeSpec[] = [
  {
    name: 'connect-udp',
    describe: 'CONNECT-UDP over HTTP/2 extended CONNECT (RFC 9298 §3.4, RFC 8441)',
    usesPostPath: false,
    serveArgs: () => [],
    connectArgs: () => [],
    proxyConfig: () => ({}),
    serverOptions: () => ({}),
  },
  {
    name: 'connect-udp-h1',
    describe: 'CONNECT-UDP over HTTP/1.1 Upgrade (RFC 9298 §3.2), one TCP connection per session',
    usesPostPath: false,
    serveArgs: () => [],
    http1: true,
    connectArgs: () => ['--http', '1.1'],
    proxyConfig: () => ({ http: '1.1' }),
    serverOptions: () => ({}),
  },
  {
    name: 'post',
    describe: 'HTTP/2 POST stream whose bodies carry DATAGRAM capsules; NOT RFC 9298, the proxy maps the path to its target',
    usesPostPath: true,
    serveArgs: ({ target, postPath }) => ['--post-route', `${postPath}=${formatHostPort(target.host, target.port)}`],
    connectArgs: ({ postPath }) => ['--mode', 'post', '--post-path', postPath],
    proxyConfig: ({ postPath }) => ({ mode: 'post', postPath }),
    serverOptions: ({ target, postPath }) => ({ postRoutes: new Map([[postPath, target]]) }),
  },
  {
    name: 'bind',
    describe:
      "CONNECT-UDP Bind (draft-ietf-masque-connect-udp-listen), the reverse path: peers -> serve's public port -> HTTP/2 -> connect --expose -> echo; " +
      'each session is a remote peer with its own compressed context on ONE bound tunnel',
    usesPostPath: false,
    entry: 'expose',
    serveArgs: () => ['--allow-bind'],
    connectArgs: () => [],
    proxyConfig: () => ({}),
    serverOptions: () => ({ allowBind: true }),
    idleProbe: BOUND_IDLE_PROBE,
  },
  {
    name: 'bind-uncompressed',
    describe: 'bind without compressed contexts: every datagram carries its peer\'s address and port on the uncompressed context (draft §4)',
    usesPostPath: false,
    entry: 'expose',
    serveArgs: () => ['--allow-bind'],
    connectArgs: () => [],
    proxyConfig: () => ({}),
    serverOptions: () => ({ allowBind: true }),
    exposerOptions: { compress: false },
    idleProbe: BOUND_IDLE_PROBE,
    onlyIsolation: { isolation: 'worker', why: 'the connect command has no way to turn compression off' },
  },
  {
    name: 'bare-relay',
    describe:
      'NOT a tunnel, a reference floor: two bare Node relays where connect and serve sit, one TCP connection per peer, 2-byte length-prefixed frames, no HTTP',
    usesPostPath: false,
    serveArgs: () => [],
    connectArgs: () => [],
    proxyConfig: () => ({}),
    serverOptions: () => ({}),
    kind: 'bare-relay',
  },
];

/** Name of the default mode. */
export const DEFAULT_BENCH_MODE = 'connect-udp';

/** What a mode runs in serve's and connect's places. */
export function benchModeKind(mode: BenchModeSpec): BenchModeKind {
  return mode.kind ?? 'tunnel';
}

/** Where the mode's load enters the tunnel. */
export function benchEntry(mode: BenchModeSpec): BenchEntry {
  return mode.entry ?? 'listen';
}

/** True when the mode named `name` exposes the echo through a bound tunnel (entry 'expose'); false for unknown names. */
export function isExposeMode(name: string): boolean {
  const m = BENCH_MODES.find((x) => x.name === name);
  return m !== undefined && benchEntry(m) === 'expose';
}

/** True when the mode named `name` runs the bare relays (a reference floor, not a tunnel); false for unknown names. */
export function isBareRelayMode(name: string): boolean {
  const m = BENCH_MODES.find((x) => x.name === name);
  return m !== undefined && benchModeKind(m) === 'bare-relay';
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

/**
 * Checks a `postPath` value: it must start with `/` and hold no spaces, control characters or `=` (serve's
 * `postRoutes` entries `PATH=HOST:PORT` split at the first `=`). Throws INVALID_OPTION.
 */
export function checkBenchPostPath(path: string): string {
  if (!path.startsWith('/') || /[\s\x00-\x1f\x7f=]/.test(path)) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `postPath must start with / and contain no spaces, control characters or =, got ${JSON.stringify(path)}`, {
      option: 'postPath',
      value: path,
    });
  }
  return path;
}
