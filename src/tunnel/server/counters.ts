import { emptyChannelCounters, type ChannelCounters } from '../datagram-channel.js';

/** Statistics of one relayed session, reported when it closes. */
export interface ServerSessionStats extends ChannelCounters {
  id: string;
  client: string;
  target: string;
  resolved: string;
  /** `h1`, `h2` or `post`. */
  transport: string;
  /** UDP datagrams that could not be sent to the target (socket error). */
  dropUdpSend: number;
  /** UDP datagrams for the target dropped because its socket already had maxUdpSendQueue datagrams queued. */
  dropSendQueue: number;
  /** ICMP unreachable errors the target socket reported (on a receive or a send); the session stays open. */
  targetUnreachable: number;
  openedAt: number;
  durationMs: number;
  closeReason: string;
  /** A bound tunnel: the public address handed to the client (draft §7). */
  bound?: string;
}

/**
 * Traffic of every session so far (ended and live), summed: what TunnelServer.sessionTotals() reports. rx is what the
 * clients sent through their tunnels, tx what went back to them.
 */
export interface ServerSessionTotals extends ChannelCounters {
  dropUdpSend: number;
  dropSendQueue: number;
  targetUnreachable: number;
}

/** The stats of a session opening now: who, where to, over what; its counters zeroed. */
export function newSessionStats(id: string, client: string, target: string, resolved: string, transport: string): ServerSessionStats {
  return {
    id,
    client,
    target,
    resolved,
    transport,
    ...emptyChannelCounters(),
    dropUdpSend: 0,
    dropSendQueue: 0,
    targetUnreachable: 0,
    openedAt: Date.now(),
    durationMs: 0,
    closeReason: '',
  };
}

/** A zeroed ServerSessionTotals. */
export function emptySessionTotals(): ServerSessionTotals {
  return { ...emptyChannelCounters(), dropUdpSend: 0, dropSendQueue: 0, targetUnreachable: 0 };
}

/** Adds the counts of `from` (session stats or totals) to `into`. */
export function addSessionTotals(into: ServerSessionTotals, from: ChannelCounters & Partial<ServerSessionTotals>): void {
  for (const k of Object.keys(into) as (keyof ServerSessionTotals)[]) into[k] += from[k] ?? 0;
}

/** How often each configured limit was hit. */
export interface ServerLimitCounters {
  /** Requests refused (503) because the server already held maxSessions tunnels. */
  serverSessions: number;
  /** Streams refused (REFUSED_STREAM) because their connection already held maxSessionsPerConnection tunnels. */
  connectionSessions: number;
  /** HTTP/2 streams refused (REFUSED_STREAM) because their connection already had maxStreamsPerConnection open. */
  connectionStreams: number;
  /** Requests refused (503) because their client address already held maxSessionsPerClient tunnels. */
  clientSessions: number;
  /** HTTP/2 connections sent GOAWAY (ENHANCE_YOUR_CALM) after maxAuthFailuresPerConnection failed authentications. */
  authConnection: number;
  /** Requests refused (429) unchecked because their client address had spent its failed-authentication budget. */
  authRate: number;
  /** Client addresses forgotten by the failed-authentication table because it held maxAuthFailureEntries. */
  authEvictions: number;
  /** Capsule streams aborted for a capsule longer than maxCapsuleLength. */
  capsuleLength: number;
  /** Datagrams dropped for exceeding maxDatagram, either direction, or for a target over IPv4 the 65507-byte IPv4 bound. */
  datagramSize: number;
  /** Connections cut off for not completing the TLS handshake or first request head within headerTimeoutMs. */
  headerTime: number;
  /** Datagrams dropped because their stream already held maxStreamBuffer unsent bytes. */
  streamBuffer: number;
  /** Datagrams for targets dropped because the session's UDP socket already had maxUdpSendQueue queued. */
  udpSendQueue: number;
  /**
   * Requests refused with 431 for an HTTP/1.1 head or HTTP/2 header list over maxHeaderSize. An HTTP/2 peer that has
   * acknowledged our SETTINGS is refused by Node's HTTP/2 layer first (RST_STREAM ENHANCE_YOUR_CALM), uncounted.
   */
  headerSize: number;
  /** HTTP/2 connections closed with GOAWAY (NO_ERROR) after connectionIdleTimeoutMs without an open stream. */
  connectionIdle: number;
  /** TCP connections closed on accept because maxConnections were already open. */
  connections: number;
  /** HTTP/2 connections closed with GOAWAY (SETTINGS_TIMEOUT) for not acknowledging our SETTINGS within headerTimeoutMs. */
  settingsTimeout: number;
  /** Bound tunnels' context registrations refused with COMPRESSION_CLOSE because maxBindContexts were open. */
  bindContexts: number;
  /** Bound tunnels aborted because maxBindResponses compression answers were waiting behind flow control. */
  bindResponses: number;
  /** Bound requests refused (503) because maxBoundPorts were bound, or no port of the range was free. */
  boundPorts: number;
  /** Bound requests refused (503) because their client address already held maxBoundPortsPerClient ports. */
  boundPortsPerClient: number;
}

/** What bound tunnels (draft-ietf-masque-connect-udp-listen) refused or dropped, server-wide. */
export interface ServerBindCounters {
  /** Bound tunnels opened. */
  sessions: number;
  /** Ports bound now. */
  portsInUse: number;
  /** Client datagrams on the uncompressed context whose target the policy refused, dropped. */
  policyDrops: number;
  /** COMPRESSION_ASSIGN refused with COMPRESSION_CLOSE: target refused by the policy or of an address family not bound. */
  assignsRefused: number;
  /** Packets from senders with no context of theirs and no uncompressed context (draft §8.1), or refused by the policy. */
  unknownSenderDrops: number;
  /** Datagrams for a closed or never-registered context, discarded (draft §3.3). */
  contextDrops: number;
  /** Uncompressed datagrams too short or with a bad IP version, dropped. */
  malformedDatagrams: number;
  /** Client datagrams for an address family the bound socket cannot reach, dropped. */
  familyDrops: number;
}

/** Server-wide counters. */
export interface ServerCounters {
  /** TCP connections accepted (those closed at maxConnections are counted in limits.connections instead). */
  connections: number;
  connectionsH1: number;
  connectionsH2: number;
  requests: number;
  sessionsTotal: number;
  sessionsActive: number;
  /** Refusals by status code. */
  refused: Record<number, number>;
  /** Requests without acceptable credentials. */
  authFailures: number;
  malformedStreams: number;
  idleTimeouts: number;
  /** ICMP unreachable errors reported by target sockets, all sessions (see ServerSessionStats.targetUnreachable). */
  targetUnreachable: number;
  /** TLS handshakes that failed (other than by timeout). */
  tlsErrors: number;
  /**
   * Connections that spoke TLS to the cleartext listener (answered 400, also in `refused`), or cleartext HTTP to the
   * TLS one (answered with a TLS alert, also in `tlsErrors`): told so and closed.
   */
  schemeMismatches: number;
  /**
   * Times this host ran short of descriptors, kernel buffers or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): requests
   * refused with 503 while opening their UDP socket, and connections that failed on accept.
   */
  localResourceErrors: number;
  limits: ServerLimitCounters;
  /** Bound tunnels. */
  bind: ServerBindCounters;
}

/** A zeroed ServerCounters. */
export function emptyServerCounters(): ServerCounters {
  return {
    connections: 0,
    connectionsH1: 0,
    connectionsH2: 0,
    requests: 0,
    sessionsTotal: 0,
    sessionsActive: 0,
    refused: {},
    authFailures: 0,
    malformedStreams: 0,
    idleTimeouts: 0,
    targetUnreachable: 0,
    tlsErrors: 0,
    schemeMismatches: 0,
    localResourceErrors: 0,
    limits: { serverSessions: 0, connectionSessions: 0, connectionStreams: 0, clientSessions: 0, authConnection: 0, authRate: 0, authEvictions: 0, capsuleLength: 0, datagramSize: 0, headerTime: 0, streamBuffer: 0, udpSendQueue: 0, headerSize: 0, connectionIdle: 0, connections: 0, settingsTimeout: 0, bindContexts: 0, bindResponses: 0, boundPorts: 0, boundPortsPerClient: 0 },
    bind: { sessions: 0, portsInUse: 0, policyDrops: 0, assignsRefused: 0, unknownSenderDrops: 0, contextDrops: 0, malformedDatagrams: 0, familyDrops: 0 },
  };
}
