import { Counter, Gauge, type Registry } from 'prom-client';

/** Every metric udp-tunnel exports starts with this. */
export const METRIC_PREFIX = 'udp_tunnel_';

/** Label values and the value of one series. */
export type Series = readonly [labels: Record<string, string>, value: number];

/** How cluster aggregation combines a series over the workers (prom-client's aggregators). */
export type Aggregation = 'sum' | 'max' | 'min' | 'first' | 'omit';

/** One metric whose values are read from the library's counters at scrape time, never updated on the data path. */
export interface ReadMetric {
  /** The name without the prefix (Envoy's statistic name where one exists). */
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames?: readonly string[];
  /** A number for a metric without labels, else every series. */
  read: () => number | readonly Series[];
  aggregator?: Aggregation;
}

/** Registers `m` in `registry`: its values are set from `m.read()` each time the registry is collected. */
export function registerRead(registry: Registry, m: ReadMetric): void {
  const labelNames = [...(m.labelNames ?? [])];
  const name = METRIC_PREFIX + m.name;
  const base = { name, help: m.help, labelNames, registers: [registry], aggregator: m.aggregator ?? 'sum' };
  if (m.type === 'counter') {
    new Counter({
      ...base,
      collect(this: Counter) {
        this.reset();
        const v = m.read();
        if (typeof v === 'number') this.inc(v);
        else for (const [labels, n] of v) this.inc(labels, n);
      },
    });
  } else {
    new Gauge({
      ...base,
      collect(this: Gauge) {
        const v = m.read();
        if (typeof v === 'number') return this.set(v);
        this.reset();
        for (const [labels, n] of v) this.set(labels, n);
      },
    });
  }
}

/** A counter updated by events (refusals, failed attempts): rare, never per datagram. */
export function eventCounter(registry: Registry, name: string, help: string, labelNames: readonly string[]): Counter {
  return new Counter({ name: METRIC_PREFIX + name, help, labelNames: [...labelNames], registers: [registry] });
}

/** `camelCase` -> `snake_case`, for label values made from the library's field names. */
export function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Series of an object of counts, one per key, under label `label` (keys in snake_case). */
export function seriesOf(counts: object, label: string): Series[] {
  return Object.entries(counts).map(([k, n]) => [{ [label]: snake(k) }, Number(n)] as const);
}

/**
 * RFC 9209 §2.3 and its IANA registry: the Proxy-Status error types. A label takes only these (or `other`), so a peer
 * cannot grow the number of series by inventing error types.
 */
const PROXY_ERROR_TYPES = new Set([
  'dns_timeout',
  'dns_error',
  'destination_not_found',
  'destination_unavailable',
  'destination_ip_prohibited',
  'destination_ip_unroutable',
  'connection_refused',
  'connection_terminated',
  'connection_timeout',
  'connection_read_timeout',
  'connection_write_timeout',
  'connection_limit_reached',
  'tls_protocol_error',
  'tls_certificate_error',
  'tls_alert_received',
  'http_request_error',
  'http_request_denied',
  'http_response_incomplete',
  'http_response_header_section_size',
  'http_response_header_size',
  'http_response_body_size',
  'http_response_trailer_section_size',
  'http_response_trailer_size',
  'http_response_transfer_coding',
  'http_response_content_coding',
  'http_response_timeout',
  'http_upgrade_failed',
  'http_protocol_error',
  'proxy_internal_response',
  'proxy_internal_error',
  'proxy_configuration_error',
  'proxy_loop_detected',
]);

/** The error type as a bounded label value: a registered type, `none` when absent, else `other`. */
export function errorTypeLabel(error: string | undefined): string {
  if (error === undefined || error === '') return 'none';
  return PROXY_ERROR_TYPES.has(error) ? error : 'other';
}
