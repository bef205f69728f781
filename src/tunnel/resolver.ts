import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';

/** One resolved address. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Outcome of a resolution: addresses, or an RFC 9209 error kind with the DNS rcode when known. */
export type ResolveResult =
  | { ok: true; addresses: ResolvedAddress[] }
  | { ok: false; error: 'dns_error' | 'dns_timeout'; rcode?: string; message: string };

/** Options of a Resolver. */
export interface ResolverOptions {
  /** DNS servers (`IP` or `IP:PORT` / `[IPv6]:PORT`); when absent the system resolver (getaddrinfo, /etc/hosts) is used. */
  servers?: string[];
  /** Give up after this long (RFC 9209 dns_timeout). */
  timeoutMs?: number;
}

/** Resolves target names before the proxy answers (RFC 9298 §3.1: resolve before replying). */
export class Resolver {
  private readonly timeoutMs: number;
  private readonly resolver: dnsPromises.Resolver | null;

  constructor(options: ResolverOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 5000;
    if (options.servers && options.servers.length > 0) {
      this.resolver = new dnsPromises.Resolver({ timeout: Math.max(100, Math.floor(this.timeoutMs / 2)), tries: 2 });
      this.resolver.setServers(options.servers);
    } else {
      this.resolver = null;
    }
  }

  /** Resolves `host`; IP literals come back as they are. */
  async resolve(host: string): Promise<ResolveResult> {
    const fam = isIP(host);
    if (fam !== 0) return { ok: true, addresses: [{ address: host, family: fam as 4 | 6 }] };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<ResolveResult>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, error: 'dns_timeout', message: `resolving ${host} took longer than ${this.timeoutMs} ms` }),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([this.lookup(host), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async lookup(host: string): Promise<ResolveResult> {
    if (this.resolver === null) {
      try {
        const list = await dnsPromises.lookup(host, { all: true, verbatim: true });
        return { ok: true, addresses: list.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 })) };
      } catch (err) {
        return dnsFailure(host, err);
      }
    }
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(host), this.resolver.resolve6(host)]);
    const addresses: ResolvedAddress[] = [];
    if (v4.status === 'fulfilled') for (const a of v4.value) addresses.push({ address: a, family: 4 });
    if (v6.status === 'fulfilled') for (const a of v6.value) addresses.push({ address: a, family: 6 });
    if (addresses.length > 0) return { ok: true, addresses };
    const err = v4.status === 'rejected' ? v4.reason : v6.status === 'rejected' ? v6.reason : undefined;
    return dnsFailure(host, err);
  }
}

function dnsFailure(host: string, err: unknown): ResolveResult {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOTFOUND':
      return { ok: false, error: 'dns_error', rcode: 'NXDOMAIN', message: `${host}: no such name` };
    case 'ENODATA':
      return { ok: false, error: 'dns_error', rcode: 'NOERROR', message: `${host}: no addresses` };
    case 'ESERVFAIL':
      return { ok: false, error: 'dns_error', rcode: 'SERVFAIL', message: `${host}: server failure` };
    case 'EREFUSED':
      return { ok: false, error: 'dns_error', rcode: 'REFUSED', message: `${host}: query refused` };
    case 'ETIMEOUT':
      return { ok: false, error: 'dns_timeout', message: `${host}: DNS timeout` };
    default:
      return { ok: false, error: 'dns_error', message: `${host}: ${code ?? (err as Error)?.message ?? 'lookup failed'}` };
  }
}
