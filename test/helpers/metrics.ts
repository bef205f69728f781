import http from 'node:http';

/** A response of the metrics listener. */
export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to a loopback listener; `headers` are sent as given. */
export function httpGet(url: string, method = 'GET', headers: http.OutgoingHttpHeaders = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.end();
  });
}

/**
 * The value of one series in Prometheus text: `name` exactly, and every label of `labels` (others may be present).
 * Undefined when the series is not there.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** Scrapes `url` until `check` holds on the text (sessions close and counters move asynchronously); returns the text. */
export async function scrapeUntil(url: string, check: (text: string) => boolean, ms = 10_000, what = 'metrics'): Promise<string> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    last = (await httpGet(url)).body;
    if (check(last)) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last scrape:\n${last.split('\n').filter((l) => l.startsWith('udp_tunnel_')).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
