import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

/** How the fake DNS server answers one name. */
export type DnsBehaviour = { a?: string[]; aaaa?: string[] } | 'nxdomain' | 'servfail' | 'silent';

/** The tests' one DNS stub: an authoritative responder on loopback (RFC 1035 §4.1), answering A/AAAA from a table. */
export interface TestDnsServer {
  port: number;
  /** `127.0.0.1:PORT`, as `dnsServers` takes it. */
  server: string;
  queries: number;
  close(): Promise<void>;
}

/** The question name at `off`, or null if the query is cut short (it is then ignored). */
function readName(msg: Buffer, off: number): { name: string; end: number } | null {
  const labels: string[] = [];
  for (;;) {
    const len = msg[off];
    if (len === undefined || off + 1 + len > msg.length) return null;
    if (len === 0) return { name: labels.join('.').toLowerCase(), end: off + 1 };
    labels.push(msg.subarray(off + 1, off + 1 + len).toString('ascii'));
    off += 1 + len;
  }
}

function ipv4Bytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Starts the responder on 127.0.0.1 port 0; names not in the table get NXDOMAIN. */
export function startTestDns(table: Record<string, DnsBehaviour>): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const server: TestDnsServer = { port: 0, server: '', queries: 0, close: () => new Promise<void>((r) => socket.close(() => r())) };
  socket.on('message', (msg, rinfo) => {
    server.queries++;
    if (msg.length < 12) return;
    const question = readName(msg, 12);
    if (question === null || question.end + 4 > msg.length) return;
    const { name, end } = question;
    const qtype = msg.readUInt16BE(end);
    const questionBytes = msg.subarray(12, end + 4);
    const behaviour = table[name] ?? 'nxdomain';
    if (behaviour === 'silent') return;
    const rcode = behaviour === 'nxdomain' ? 3 : behaviour === 'servfail' ? 2 : 0;
    const answers: Buffer[] = [];
    if (typeof behaviour === 'object') {
      const list = qtype === 1 ? (behaviour.a ?? []) : qtype === 28 ? (behaviour.aaaa ?? []) : [];
      for (const addr of list) {
        const rdata = qtype === 1 ? ipv4Bytes(addr) : ipv6Bytes(addr);
        const rr = Buffer.alloc(12);
        rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
        rr.writeUInt16BE(qtype, 2);
        rr.writeUInt16BE(1, 4);
        rr.writeUInt32BE(60, 6);
        rr.writeUInt16BE(rdata.length, 10);
        answers.push(rr, rdata);
      }
    }
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2);
    header.writeUInt16BE(0x8400 | 0x0100 | rcode, 2); // QR, AA, RD echoed, rcode
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length / 2, 6);
    socket.send(Buffer.concat([header, questionBytes, ...answers]), rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => {
    socket.bind(0, '127.0.0.1', () => {
      server.port = (socket.address() as AddressInfo).port;
      server.server = `127.0.0.1:${server.port}`;
      resolve(server);
    });
  });
}
