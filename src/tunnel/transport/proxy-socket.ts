import { createHash, type X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import type { ClientTlsOptions } from './types.js';

/** TLS error codes that no retry will fix. */
const TLS_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
  'UT_ERR_TLS',
]);

/**
 * Whether bytes read from a cleartext connection begin a TLS record: RFC 8446 §5.1, content type alert (21) or
 * handshake (22), then legacy version 3.x. No HTTP/1.1 response or HTTP/2 frame header a proxy sends starts so.
 */
export function startsTlsRecord(buf: Buffer): boolean {
  return buf.length > 0 && (buf[0] === 0x15 || buf[0] === 0x16) && (buf.length < 2 || buf[1] === 0x03);
}

/** The error for a cleartext request answered with TLS: the proxy URL should say https://. */
export function speaksTlsError(proxy: URL): UdpTunnelError {
  return new UdpTunnelError(
    ErrorCodes.PROXY_UNREACHABLE,
    `proxy ${proxy.host} answered with TLS: the proxy speaks TLS: use https://${proxy.host}`,
    {},
    { retryable: false },
  );
}

/** Maps a connection-level failure to a coded error with a hint on how to fix it. */
export function connectionError(err: unknown, proxy: URL): UdpTunnelError {
  if (err instanceof UdpTunnelError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  // RFC 8446 §5.1: a TLS record starts with version 3.x; an answer to our ClientHello that does not (an HTTP/1.1
  // error, an HTTP/2 SETTINGS frame) comes from a cleartext port.
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return new UdpTunnelError(
      ErrorCodes.TLS,
      `TLS handshake with ${proxy.host} failed: the proxy speaks cleartext HTTP: use http://${proxy.host}`,
      { osCode: code },
      { cause: err, retryable: false },
    );
  }
  if (TLS_ERROR_CODES.has(code) || /certificate|ssl|tls/i.test(code)) {
    const clientCert = /CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA/.test(code);
    const hint = clientCert
      ? 'the proxy wants a client certificate it trusts: set tls.cert and tls.key'
      : 'set tls.ca, tls.pins or tls.insecure for a private proxy';
    const related = clientCert ? ['tls.cert', 'tls.key'] : ['tls.ca', 'tls.pins', 'tls.insecure'];
    // OpenSSL messages carry a hex prefix and a source path; keep only the reason.
    const reason = /SSL routines:[^:]*:([^:]+)/.exec(e.message)?.[1] ?? String(e.message).split('\n')[0];
    return new UdpTunnelError(ErrorCodes.TLS, `TLS handshake with ${proxy.host} failed: ${reason} (${code}); ${hint}`, { osCode: code, related }, { cause: err });
  }
  return new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, `cannot reach proxy ${proxy.host}: ${e?.message ?? String(err)}`, { osCode: code }, { cause: err });
}

/** `sha256/BASE64` of a certificate's SubjectPublicKeyInfo (the pin format of RFC 7469 §2.4). */
export function spkiPin(cert: X509Certificate): string {
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(der).digest('base64')}`;
}

/** Validates `tls.pins` values: `sha256/` followed by the base64 of 32 bytes. Throws INVALID_OPTION. */
export function parsePins(pins: readonly string[]): string[] {
  return pins.map((p) => {
    const m = /^sha256\/([A-Za-z0-9+/]{43}=)$/.exec(p.trim());
    if (m === null || Buffer.from(m[1]!, 'base64').length !== 32) {
      throw new UdpTunnelError(
        ErrorCodes.INVALID_OPTION,
        `tls.pins '${p}': expected sha256/BASE64 of the certificate's SubjectPublicKeyInfo (44 base64 characters)`,
        { option: 'tls.pins', value: p },
      );
    }
    return `sha256/${m[1]}`;
  });
}

const lastErrors = new WeakMap<net.Socket, Error>();

/** The last error a socket from connectProxySocket reported after it was handed out (e.g. a TLS 1.3 alert). */
export function lastSocketError(socket: net.Socket): Error | undefined {
  return lastErrors.get(socket);
}

/** Options of connectProxySocket. */
export interface ProxySocketOptions {
  proxy: URL;
  tls: ClientTlsOptions;
  /** ALPN protocols to offer over TLS, most preferred first (RFC 7301). */
  alpn: string[];
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Opens the byte stream to the proxy: TCP for http://, TLS for https:// with certificate checks (CA, pins,
 * client certificate) and ALPN. Resolves once the stream is ready for the first request byte.
 */
export function connectProxySocket(opts: ProxySocketOptions): Promise<net.Socket> {
  const { proxy, alpn, timeoutMs, signal } = opts;
  const t = opts.tls;
  const host = proxy.hostname.startsWith('[') ? proxy.hostname.slice(1, -1) : proxy.hostname;
  const port = Number(proxy.port);
  const secure = proxy.protocol === 'https:';
  const pins = t.pins ?? [];
  return new Promise<net.Socket>((resolve, reject) => {
    let socket: net.Socket;
    if (secure) {
      const options: tls.ConnectionOptions = {
        host,
        port,
        ALPNProtocols: alpn,
        // With pins and no CA, the pin is the trust anchor: the chain is not checked (self-signed proxies).
        rejectUnauthorized: !(t.insecure || (pins.length > 0 && !t.ca)),
      };
      // RFC 6066 §3: SNI carries host names only, never IP literals.
      const sni = t.servername ?? (net.isIP(host) ? undefined : host);
      if (sni) options.servername = sni;
      if (t.servername) options.checkServerIdentity = (_h, cert) => tls.checkServerIdentity(t.servername!, cert);
      if (t.ca) options.ca = t.ca;
      if (t.cert) options.cert = t.cert;
      if (t.key) options.key = t.key;
      socket = tls.connect(options);
      if (t.onKeylog) socket.on('keylog', t.onKeylog);
    } else {
      socket = net.connect({ host, port });
    }
    let settled = false;
    const finish = (err: UdpTunnelError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        // Errors after the handshake (TLS 1.3 sends a missing-client-certificate alert late) are kept for messages.
        socket.on('error', (e) => lastErrors.set(socket, e));
        resolve(socket);
      }
    };
    const onError = (err: Error): void => finish(connectionError(err, proxy));
    const onAbort = (): void => finish(new UdpTunnelError(ErrorCodes.CLOSED, 'session closed while connecting'));
    const timer = setTimeout(
      () => finish(new UdpTunnelError(ErrorCodes.TIMEOUT, `proxy ${proxy.host} did not complete the connection within ${timeoutMs} ms`, { timeoutMs })),
      timeoutMs,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onError);
    if (!secure) {
      socket.once('connect', () => finish(null));
      return;
    }
    (socket as tls.TLSSocket).once('secureConnect', () => {
      const s = socket as tls.TLSSocket;
      if (pins.length > 0) {
        const cert = s.getPeerX509Certificate();
        const got = cert ? spkiPin(cert) : 'none';
        if (!pins.includes(got)) {
          return finish(
            new UdpTunnelError(ErrorCodes.TLS, `TLS certificate pin mismatch for ${proxy.host}: the proxy presented ${got}, which no tls.pins entry names`, {
              presented: got,
              related: ['tls.pins'],
            }),
          );
        }
      }
      // RFC 7301 §3.2 / RFC 9113 §3.2: HTTP/2 over TLS only when the server selected "h2".
      if (alpn.length === 1 && alpn[0] === 'h2' && s.alpnProtocol !== 'h2') {
        return finish(
          new UdpTunnelError(ErrorCodes.CONNECT_PROTOCOL_DISABLED, `proxy ${proxy.host} did not negotiate HTTP/2 (ALPN h2); try http 1.1`, { related: ['http'] }),
        );
      }
      finish(null);
    });
  });
}
