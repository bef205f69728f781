/** Anything kept per local UDP peer. */
export interface PeerKeyed {
  readonly address: string;
  readonly port: number;
}

/**
 * Local peers by port, then address. Finding a peer's entry allocates nothing (no `address|port` key string per
 * datagram), which matters on the per-datagram path; a port almost always has a single address, so lists are short.
 */
export class PeerTable<T extends PeerKeyed> {
  private readonly byPort = new Map<number, T[]>();

  /** The entry of the peer at address:port, or undefined. */
  get(address: string, port: number): T | undefined {
    const list = this.byPort.get(port);
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) if (list[i]!.address === address) return list[i];
    return undefined;
  }

  /** Adds an entry; the caller makes sure its peer has none yet. */
  add(entry: T): void {
    const list = this.byPort.get(entry.port);
    if (list === undefined) this.byPort.set(entry.port, [entry]);
    else list.push(entry);
  }

  /** Removes an entry if present. */
  delete(entry: T): void {
    const list = this.byPort.get(entry.port);
    if (list === undefined) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byPort.delete(entry.port);
  }
}
