import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';
import { spkiPin } from './transport/proxy-socket.js';

/** A generated certificate and key (PEM) with the values a client needs to trust it. */
export interface GeneratedCertificate {
  cert: string;
  key: string;
  /** SHA-256 of the DER certificate, colon-separated hex (what `openssl x509 -fingerprint -sha256` prints). */
  fingerprint256: string;
  /** `sha256/BASE64` of the SubjectPublicKeyInfo: the value `connect --pin` takes. */
  pin: string;
}

/** What to put in a generated certificate. */
export interface CertificateRequest {
  commonName?: string;
  /** DNS names and IP literals for subjectAltName; default localhost, 127.0.0.1, ::1. */
  altNames?: string[];
  /** A CA certificate (may sign others) rather than a leaf. */
  isCa?: boolean;
  /** Sign with this CA instead of self-signing. */
  issuer?: { cert: string; key: string };
  /** Validity in days (default 7: these certificates are for local use). */
  days?: number;
}

/** Pin and fingerprint of a PEM certificate. */
export function describeCertificate(pem: string | Buffer): { fingerprint256: string; pin: string } {
  const x = new X509Certificate(pem);
  return { fingerprint256: x.fingerprint256, pin: spkiPin(x) };
}

/**
 * Generates an ECDSA P-256 certificate (self-signed, or signed by `issuer`) for local use: `serve --self-signed`
 * and tests. Keys live only in memory unless the caller writes them out.
 */
export async function generateCertificate(req: CertificateRequest = {}): Promise<GeneratedCertificate> {
  const names = req.altNames ?? ['localhost', '127.0.0.1', '::1'];
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + (req.days ?? 7) * 86_400_000);
  const altNames = names.map((n) => (isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n }));
  const extensions = req.isCa
    ? [
        { name: 'basicConstraints' as const, cA: true, critical: true },
        { name: 'keyUsage' as const, keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ]
    : [
        { name: 'basicConstraints' as const, cA: false, critical: true },
        { name: 'keyUsage' as const, digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage' as const, serverAuth: true, clientAuth: true },
        { name: 'subjectAltName' as const, altNames },
      ];
  const pems = await generate([{ name: 'commonName', value: req.commonName ?? names[0] ?? 'udp-tunnel' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions,
    ...(req.issuer ? { ca: req.issuer } : {}),
  });
  return { cert: pems.cert, key: pems.private, ...describeCertificate(pems.cert) };
}
