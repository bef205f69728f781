import { DEMO_TRAFFIC_DEFAULTS } from '../../bench/defaults.js';
import type { CommandSchema, OptionSpec, OptionValues } from '../options/spec.js';
import { OUTPUT_GROUP, OUTPUT_OPTIONS } from './common.js';

const TRAFFIC = 'Traffic';

/** `udp-tunnel demo`'s options. */
export const DEMO_OPTIONS = [
  { name: 'peers', kind: 'int', value: 'N', min: 1, max: 1000, default: DEMO_TRAFFIC_DEFAULTS.peers, group: TRAFFIC, describe: 'Local UDP peers, each its own tunnel session' },
  { name: 'count', kind: 'int', value: 'N', min: 1, max: 1_000_000, default: DEMO_TRAFFIC_DEFAULTS.count, group: TRAFFIC, describe: 'Datagrams per peer, one in flight at a time' },
  { name: 'size', kind: 'int', value: 'BYTES', min: 0, max: 65507, default: DEMO_TRAFFIC_DEFAULTS.size, group: TRAFFIC, describe: 'Datagram size in bytes' },
  { name: 'ipv6', kind: 'boolean', group: TRAFFIC, describe: 'Use ::1 instead of 127.0.0.1' },
  { name: 'keep', kind: 'boolean', group: TRAFFIC, describe: 'Keep the tunnel up afterwards to try socat or dig (Ctrl-C ends)' },
  ...OUTPUT_OPTIONS,
] as const satisfies readonly OptionSpec[];

/** demo's parsed options. */
export type DemoOptions = OptionValues<typeof DEMO_OPTIONS>;

/** `udp-tunnel demo`. */
export const DEMO_SCHEMA: CommandSchema = {
  command: 'demo',
  usage: 'demo [options]',
  summary: 'Start a UDP echo target, serve and connect on loopback, send datagrams through the tunnel and show what happened.',
  groups: [TRAFFIC, OUTPUT_GROUP],
  options: DEMO_OPTIONS,
  examples: [
    { cmd: 'udp-tunnel demo', what: 'Run the default demo and exit' },
    { cmd: 'udp-tunnel demo --keep', what: 'Leave the tunnel up and print commands to try with socat' },
    { cmd: 'udp-tunnel demo --ipv6 --size 1200 --json', what: 'IPv6, 1200-byte datagrams, NDJSON' },
  ],
};
