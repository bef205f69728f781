// Each command's name and one-line description, apart from its options and handler: `udp-tunnel --help` lists the
// commands from here without loading what they run (the tunnel, TLS, histograms, decoders).

/** The commands, in the order `udp-tunnel --help` lists them. */
export const COMMAND_NAMES = ['connect', 'serve', 'inspect', 'bench', 'demo'] as const;

/** A command's name. */
export type CommandName = (typeof COMMAND_NAMES)[number];

/** What `udp-tunnel --help` shows for each command. */
export const COMMAND_SUMMARIES: Readonly<Record<CommandName, { command: CommandName; describe: string }>> = {
  connect: {
    command: 'connect',
    describe: 'Listen on a local UDP port and forward each local peer through an HTTP proxy (CONNECT-UDP, RFC 9298, or POST mode)',
  },
  serve: {
    command: 'serve',
    describe: 'Run a CONNECT-UDP proxy (RFC 9298) over HTTP/2 and HTTP/1.1, plus optional POST routes, relaying to UDP targets',
  },
  inspect: {
    command: 'inspect',
    describe: 'Decode capsule traffic (RFC 9297/9298): live as a relay, or from a raw/hex stream, a recording or a pcap capture',
  },
  bench: {
    command: 'bench',
    describe: 'Benchmark the tunnel: echo, serve and connect on loopback, the same load direct and through the tunnel',
  },
  demo: {
    command: 'demo',
    describe: 'Start echo target + serve + connect on loopback, send datagrams through, and show what happened',
  },
};
