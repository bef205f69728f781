// Each command's name and one-line description, apart from its options and handler: `udp-tunnel --help` lists the
// commands from here without loading what they run (the tunnel, TLS, histograms, decoders).

/** The commands, in the order `udp-tunnel --help` lists them. */
export const COMMAND_NAMES = ['connect', 'serve', 'inspect', 'bench', 'demo'] as const;

/** A command's name. */
export type CommandName = (typeof COMMAND_NAMES)[number];

/** What `udp-tunnel --help` shows for each command (one line each, within 100 columns). */
export const COMMAND_SUMMARIES: Readonly<Record<CommandName, { name: CommandName; describe: string }>> = {
  connect: { name: 'connect', describe: 'Forward a local UDP port through an HTTP proxy (CONNECT-UDP, RFC 9298, or POST)' },
  serve: { name: 'serve', describe: 'Run the proxy: accept CONNECT-UDP over HTTP/2 and HTTP/1.1 and relay to UDP targets' },
  inspect: { name: 'inspect', describe: 'Decode capsule traffic live (as a relay), or from a stream, recording or pcap' },
  bench: { name: 'bench', describe: 'Benchmark the tunnel on loopback: the same load direct and through the tunnel' },
  demo: { name: 'demo', describe: 'Start echo + serve + connect on loopback, send datagrams through, show the result' },
};
