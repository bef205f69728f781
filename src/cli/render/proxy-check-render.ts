import type { ProxyProbeResult } from '../../tunnel/proxy-probe.js';
import type { TunnelCheckResult } from '../../tunnel/tunnel-check.js';
import { color } from '../color.js';
import { wrap } from './connect-events.js';
import { flagMessage, flagText } from '../errors.js';
import type { Output } from '../output.js';

/** Columns a wrapped warning line may use after the time prefix, `warning: ` and its indent (100 in all). */
const WRAP_WIDTH = 80;

/** `TLSv1.3` -> `TLS 1.3`. */
function tlsName(version: string | undefined): string {
  return version ? version.replace(/^TLSv/, 'TLS ') : 'TLS';
}

/** What the probe found, in a few words: `h2 over TLS 1.3, extended CONNECT enabled`. */
export function describeProbe(r: ProxyProbeResult): string {
  const base =
    r.transport === 'h2' ? `h2 over ${tlsName(r.tlsVersion)}` : r.transport === 'h2c' ? 'h2c over cleartext TCP' : r.tls ? `HTTP/1.1 over ${tlsName(r.tlsVersion)}` : 'HTTP/1.1 over cleartext TCP';
  if (r.extendedConnect === undefined) return base;
  return `${base}, extended CONNECT ${r.extendedConnect ? 'enabled' : 'not enabled'}`;
}

/** The probe's failure as the CLI shows it: the message with flags, and a hint unless the message already says it. */
function failureLines(r: { error?: ProxyProbeResult['error']; hint?: string; hintOptions?: string[] }): { message: string; hint?: string } {
  const message = r.error ? `${flagMessage(r.error)} [${r.error.code}]` : 'failed';
  const hint = r.hint ? flagText(r.hint, r.hintOptions ?? []) : undefined;
  return hint && !message.includes(hint) ? { message, hint } : { message };
}

/** The probe's fields for JSON (raw numbers; the error as code and message with flags). */
function probeFields(r: ProxyProbeResult): Record<string, unknown> {
  const { error, hint, hintOptions, ...rest } = r;
  return {
    ...rest,
    ...(error ? { code: error.code, message: flagMessage(error) } : {}),
    ...(hint ? { hint: flagText(hint, hintOptions ?? []) } : {}),
  };
}

/**
 * Renders connect's start-up probe: one `proxy-check` event, or one info line (ok) or a warning with a hint.
 * `named`: one of several proxies, so each line names it.
 */
export function renderProxyProbe(out: Output, r: ProxyProbeResult, opts: { named?: boolean } = {}): void {
  out.event('proxy-check', probeFields(r));
  if (out.json) return;
  const which = opts.named ? ` ${r.proxy}` : '';
  if (r.ok) {
    out.info(`proxy${which} ok: ${describeProbe(r)}`);
    return;
  }
  const f = failureLines(r);
  if (opts.named) {
    // The URL makes the line long: the message goes on lines of its own.
    out.warn(`proxy check${which} failed:`);
    for (const line of wrap(f.message, WRAP_WIDTH)) out.warn(`  ${line}`);
  } else out.warn(`proxy check: ${f.message}`);
  if (f.hint) out.warn(`hint: ${f.hint}`);
  out.warn(opts.named ? 'connect keeps listening; sessions skip a proxy while it is down' : 'connect keeps listening; each new peer tries the proxy again');
}

/** Renders `connect --check`: one `check` event, or a short report on stdout. */
export function renderTunnelCheck(out: Output, r: TunnelCheckResult): void {
  const { probe, error, hint, hintOptions, ...rest } = r;
  out.event('check', {
    ...rest,
    probe: probeFields(probe),
    ...(error ? { code: error.code, message: flagMessage(error) } : {}),
    ...(hint ? { hint: flagText(hint, hintOptions ?? []) } : {}),
  });
  if (out.json) return;
  const c = color();
  const label = (s: string): string => c.bold(s.padEnd(13));
  const probeLine = probe.ok || probe.extendedConnect !== undefined ? describeProbe(probe) : 'not reached';
  out.data(`${label('proxy')}${r.proxy} (${probeLine}, ${probe.elapsedMs} ms)`);
  out.data(`${label('request')}${r.request.method} ${r.request.path} [${r.transport}]`);
  if (r.status !== undefined) {
    const after = r.responseMs === undefined ? '' : ` after ${r.responseMs} ms`;
    const what = r.ok ? c.green('tunnel established') : r.problem === 'auth' ? c.red('authentication failed') : c.red('tunnel refused');
    out.data(`${label('status')}${r.status}, ${what}${after}`);
  } else {
    out.data(`${label('status')}${c.red('no response')}`);
  }
  const ps = r.proxyStatus;
  if (ps === undefined) {
    if (r.status !== undefined) out.data(`${label('proxy-status')}none`);
  } else if (!ps.valid) {
    out.data(`${label('proxy-status')}${ps.raw} (does not parse as RFC 9209)`);
  } else {
    for (const e of ps.entries) {
      const parts = [e.proxy, ...(e.error ? [`error=${c.bold(e.error)}`] : []), ...(e.details !== undefined ? [`details=${JSON.stringify(e.details)}`] : [])];
      out.data(`${label('proxy-status')}${parts.join(' ')}`);
    }
  }
  if (r.headers) {
    out.data(c.bold('headers'));
    for (const [k, v] of Object.entries(r.headers)) for (const one of Array.isArray(v) ? v : [v]) out.data(`  ${k}: ${one}`);
  }
  if (r.ok) return;
  if (r.status === undefined) {
    const f = failureLines(r);
    out.data(`${label('error')}${f.message}`);
    if (f.hint) out.data(`${label('hint')}${f.hint}`);
  } else if (r.hint) {
    out.data(`${label('hint')}${flagText(r.hint, r.hintOptions ?? [])}`);
  }
}
