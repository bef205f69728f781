import type { AddressInfo } from 'node:net';
import type { HostPort } from './address.js';
import { TunnelClient, type BufferOptions, type ClientCounters, type TunnelClientOptions } from './client.js';
import { buildSharedTransport, checkPostPath, type ClientMode, type ProxyConfig } from './client-config.js';
import { PROXY_CONFIG_DEFAULTS } from './defaults.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import type { Transport } from './transport/types.js';

/** One local UDP port and where its peers' tunnels go. Unset fields take the proxy's or the shared client's value. */
export interface ForwardConfig {
  /** Local UDP address to listen on (port 0 = any). */
  host: string;
  port: number;
  /** The UDP target (CONNECT-UDP); default ProxyConfig.target. */
  target?: HostPort;
  /** Default ProxyConfig.mode. */
  mode?: ClientMode;
  /** POST mode request path; default ProxyConfig.postPath. */
  postPath?: string;
  /** Extra request headers on top of ProxyConfig.headers; one with the same name replaces the proxy's. */
  headers?: [string, string][];
  idleTimeoutMs?: number;
  buffer?: BufferOptions;
}

/** Client options every forward shares. */
export type SharedClientOptions = Omit<TunnelClientOptions, 'host' | 'port' | 'transport' | 'request' | 'ownsTransport' | 'sessionIdPrefix'>;

/** Options of a ForwardGroup. */
export interface ForwardGroupOptions {
  /** The proxy; its target, mode, POST path and headers are the forwards' defaults. */
  proxy: ProxyConfig;
  forwards: readonly ForwardConfig[];
  client?: SharedClientOptions;
  /**
   * Builds the one transport every forward of a mode shares; default: a transport to `proxy` alone. connect passes
   * one over all its proxies (failover or round-robin), so forwards and failover combine.
   */
  transportFor?: (config: ProxyConfig) => Transport;
}

/** The headers of `base` with those of `extra` added; a name in both keeps extra's value (forward over proxy). */
export function mergeHeaders(base: readonly [string, string][], extra: readonly [string, string][]): [string, string][] {
  const names = new Set(extra.map(([n]) => n.toLowerCase()));
  return [...base.filter(([n]) => !names.has(n.toLowerCase())), ...extra];
}

/**
 * Several local UDP ports, each forwarded to its own target, through one proxy: one TunnelClient per forward, all
 * riding one shared transport per mode (so one HTTP/2 connection pool for every CONNECT-UDP forward).
 */
export class ForwardGroup {
  /** One client per forward, in order. */
  readonly clients: readonly TunnelClient[];
  private readonly transports = new Map<ClientMode, Transport>();
  private readonly transportByForward: Transport[] = [];
  private closed = false;

  constructor(options: ForwardGroupOptions) {
    const { proxy, forwards } = options;
    if (forwards.length === 0) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'forwards must list at least one forward', { option: 'forwards' });
    const clients: TunnelClient[] = [];
    try {
      forwards.forEach((f, i) => {
        const mode = f.mode ?? proxy.mode ?? PROXY_CONFIG_DEFAULTS.mode;
        const target = f.target ?? proxy.target;
        const postPath = f.postPath ?? proxy.postPath ?? PROXY_CONFIG_DEFAULTS.postPath;
        if (mode === 'connect-udp' && target === undefined) {
          throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `forward ${i}: connect-udp mode needs a target HOST:PORT`, { option: 'target' });
        }
        if (mode === 'post') checkPostPath(postPath);
        let transport = this.transports.get(mode);
        if (transport === undefined) {
          transport = (options.transportFor ?? buildSharedTransport)({ ...proxy, mode });
          this.transports.set(mode, transport);
        }
        this.transportByForward.push(transport);
        clients.push(
          new TunnelClient({
            ...options.client,
            ...(f.idleTimeoutMs !== undefined ? { idleTimeoutMs: f.idleTimeoutMs } : {}),
            ...(f.buffer !== undefined ? { buffer: f.buffer } : {}),
            host: f.host,
            port: f.port,
            transport,
            ownsTransport: false,
            // Ids stay unique across forwards, so logs and the %SESSION_ID% header name one session.
            sessionIdPrefix: forwards.length > 1 ? `f${i}c` : 'c',
            request: {
              ...(mode === 'post' ? { postPath } : { target: target! }),
              headers: mergeHeaders(proxy.headers ?? [], f.headers ?? []),
            },
          }),
        );
      });
    } catch (err) {
      for (const t of this.transports.values()) void t.close();
      throw err;
    }
    this.clients = clients;
  }

  /** The transport forward `i` rides (shared with every forward of the same mode). */
  transportOf(i: number): Transport {
    const t = this.transportByForward[i];
    if (t === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `no forward ${i}`, { option: 'forwards' });
    return t;
  }

  /** Binds every forward's local socket, in order; resolves with their addresses. On a failure, closes them all. */
  async start(): Promise<AddressInfo[]> {
    const out: AddressInfo[] = [];
    try {
      for (const c of this.clients) out.push(await c.start());
    } catch (err) {
      await this.close();
      throw err;
    }
    return out;
  }

  /** Client-wide counters summed over the forwards. */
  get counters(): ClientCounters {
    const sum = { ...this.clients[0]!.counters };
    for (const c of this.clients.slice(1)) {
      for (const k of Object.keys(sum) as (keyof ClientCounters)[]) sum[k] += c.counters[k];
    }
    return sum;
  }

  /** Closes every forward, then the shared transports once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.clients.map((c) => c.close()));
    await Promise.all([...this.transports.values()].map((t) => t.close()));
  }
}
