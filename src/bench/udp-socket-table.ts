import { readFileSync } from 'node:fs';

/** One UDP socket of the network namespace, as Linux lists it in /proc/net/udp or /proc/net/udp6. */
export interface UdpSocketRow {
  /** Local address as the kernel writes it (hex, network order per 32-bit word). */
  localHex: string;
  localPort: number;
  /** Remote address (hex); all zeros unless the socket is connected. */
  remoteHex: string;
  /** Remote port; 0 unless the socket is connected. */
  remotePort: number;
  /** Bytes waiting in the receive queue (kernel accounting, overhead included). */
  rxQueueBytes: number;
  /** Socket inode: stays the same for the life of the socket, so it tells two sockets on one port apart. */
  inode: number;
  /** Datagrams dropped at this socket, mostly because its receive buffer was full. */
  drops: number;
}

/** True for 127.0.0.1 as /proc/net/udp writes it: the raw 32-bit word in hex, so byte order follows the host's. */
export function isLoopback4Hex(hex: string): boolean {
  return hex === '0100007F' || hex === '7F000001';
}

/**
 * Reads every UDP socket of this network namespace (IPv4 and IPv6) from Linux /proc; an empty list elsewhere.
 * Unlike the system-wide counters of /proc/net/snmp, the per-socket `drops` column does not mix in other processes.
 */
export function readUdpSocketTable(): UdpSocketRow[] {
  const rows: UdpSocketRow[] = [];
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
      const f = line.trim().split(/\s+/);
      if (f.length < 13) continue;
      const local = f[1]!;
      const remote = f[2]!;
      const queues = f[4]!;
      const lc = local.lastIndexOf(':');
      const rc = remote.lastIndexOf(':');
      const row: UdpSocketRow = {
        localHex: local.slice(0, lc),
        localPort: parseInt(local.slice(lc + 1), 16),
        remoteHex: remote.slice(0, rc),
        remotePort: parseInt(remote.slice(rc + 1), 16),
        rxQueueBytes: parseInt(queues.slice(queues.indexOf(':') + 1), 16),
        inode: Number(f[9]),
        drops: Number(f[f.length - 1]),
      };
      if (Number.isFinite(row.localPort) && Number.isFinite(row.inode) && Number.isFinite(row.drops)) rows.push(row);
    }
  }
  return rows;
}
