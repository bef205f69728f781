import { ErrorCodes, UdpTunnelError } from './errors.js';

const UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration into milliseconds: `500ms`, `2s`, `1.5m`, `1h`, `250us`; a bare number uses `defaultUnit`.
 * Throws UT_ERR_INVALID_OPTION naming `what` (the option: its library name, or the flag when the CLI calls) on anything else.
 */
export function parseDuration(text: string | number, what: string, defaultUnit: 'ms' | 's' = 's'): number {
  const s = String(text).trim();
  const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?$/.exec(s);
  if (!m) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${what}: invalid duration '${s}' (examples: 500ms, 30s, 2m)`, { option: what, value: s });
  return Number(m[1]) * UNITS[m[2] ?? defaultUnit]!;
}

/** Parses a byte size: `1500`, `16k`/`16KiB`, `4m`/`4MiB`; throws UT_ERR_INVALID_OPTION naming `what` as parseDuration does. */
export function parseSize(text: string | number, what: string): number {
  const s = String(text).trim();
  const m = /^(\d+)\s*(k|kib|kb|m|mib|mb)?$/i.exec(s);
  if (!m) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${what}: invalid size '${s}' (examples: 1500, 64k, 4m)`, { option: what, value: s });
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1;
  return Number(m[1]) * mult;
}
