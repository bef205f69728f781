import type { Duplex } from 'node:stream';
import type { HostPort } from '../address.js';
import type { DownstreamInfo } from '../header-template.js';

/** An established tunnel: a byte stream carrying capsules both ways. */
export interface TunnelHandle {
  /** The capsule stream (HTTP/2 stream, upgraded socket or POST bodies). */
  readonly stream: Duplex;
  /** Response headers of the proxy, for logs. */
  readonly responseHeaders: Record<string, string | string[] | undefined>;
  /** Ends the tunnel: 'malformed' aborts it as a protocol error (RFC 9297 §3.3), 'close' ends it normally. */
  abort(reason: 'malformed' | 'close'): void;
  /** The proxy it rides (credentials redacted), when the transport knows several. */
  readonly proxy?: string;
}

/** What a session tells open() besides its id. */
export interface OpenOptions {
  /** The tunnel this session just lost (reset, connection gone); a transport with several proxies moves it on. */
  lost?: TunnelHandle;
}

/** TLS settings of a client transport. */
export interface ClientTlsOptions {
  ca?: string | Buffer;
  insecure?: boolean;
  servername?: string;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** `sha256/BASE64` pins of the proxy certificate's SubjectPublicKeyInfo; with no `ca`, a pin replaces chain checks. */
  pins?: string[];
  /** Receives each NSS key log line of the TLS connections (SSLKEYLOGFILE format), for decrypting captures. */
  onKeylog?: (line: Buffer) => void;
}

/** Everything a transport needs to know about the proxy and the target. */
export interface TransportOptions {
  /** Proxy origin, `http://host:port` (cleartext) or `https://host:port` (TLS). */
  proxy: URL;
  /**
   * Request path for this mode (the expanded URI template, or the POST path); empty when every open names its
   * own target (TunnelRequest.target).
   */
  path: string;
  /** The URI template that per-open targets expand into (CONNECT-UDP); without it, opens cannot name a target. */
  template?: string;
  /** Extra request headers (RFC 9110 field names, lowercase). */
  headers: [string, string][];
  tls: ClientTlsOptions;
  /** Give up on one attempt after this long. */
  connectTimeoutMs: number;
  /** Credentials to send (`Bearer ...` or `Basic ...`); HTTP/2 sends Authorization, HTTP/1.1 Proxy-Authorization. */
  authorization?: string;
}

/** What one open asks for beyond the transport's own settings, so forwards with other targets can share it. */
export interface TunnelRequest {
  /** The UDP target (CONNECT-UDP); default the transport's own. */
  target?: HostPort;
  /** The POST mode request path; default the transport's own. */
  postPath?: string;
  /** Extra request headers, used instead of the transport's own; values may hold `%NAME%` header templates. */
  headers?: [string, string][];
  /** The local peer and socket the tunnel serves, for header templates. */
  downstream?: DownstreamInfo;
  /**
   * Ask for bound UDP proxying (draft-ietf-masque-connect-udp-listen §3): sends `Connect-UDP-Bind: ?1`, and with no
   * `target` puts `*` in target_host and target_port (percent-encoded), so the proxy may not fall back.
   */
  bind?: boolean;
}

/** A way to open tunnels to a proxy. Sessions do not know which one they ride. */
export interface Transport {
  /** Short name for logs: `h2`, `h1`, `post`. */
  readonly name: string;
  /** Opens one tunnel; rejects with a UdpTunnelError whose `retryable` says whether another attempt may help. */
  open(session: string, signal: AbortSignal, request?: TunnelRequest, options?: OpenOptions): Promise<TunnelHandle>;
  /**
   * When true, a session whose tunnel is lost stays and opens a new one (passing the lost one) on its next datagram,
   * instead of ending.
   */
  readonly reopensLostTunnels?: boolean;
  /** Closes pooled connections. */
  close(): Promise<void>;
}
