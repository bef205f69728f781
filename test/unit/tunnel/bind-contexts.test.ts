import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BindContexts } from '../../../src/tunnel/bind-contexts.js';
import type { CompressionAssign } from '../../../src/tunnel/codec/bind.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';

function rule(expected: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof UdpTunnelError, String(err));
    assert.equal(err.code, ErrorCodes.BIND_MALFORMED);
    assert.equal(err.details['rule'], expected, err.message);
    return true;
  };
}

const v4 = (contextId: number, port = 443, address = '192.0.2.1'): CompressionAssign => ({ contextId, ipVersion: 4, address, port });
const unc = (contextId: number): CompressionAssign => ({ contextId, ipVersion: 0 });

describe('BindContexts', () => {
  it('allocates IDs of its own parity, never 0, never reused', () => {
    const client = new BindContexts({ side: 'client' });
    assert.equal(client.nextId(), 2);
    client.assignLocal(v4(2));
    assert.equal(client.nextId(), 4);
    client.assignLocal(v4(10, 444));
    assert.equal(client.nextId(), 12);
    const proxy = new BindContexts({ side: 'proxy' });
    assert.equal(proxy.nextId(), 1);
    proxy.assignLocal(v4(1));
    proxy.closeLocal(1);
    assert.equal(proxy.nextId(), 3);
  });

  it('refuses a peer registration of the wrong parity, and its own', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    assert.throws(() => proxy.receiveAssign(v4(3)), rule('parity'));
    assert.throws(() => proxy.assignLocal(v4(2)), rule('parity'));
    const client = new BindContexts({ side: 'client' });
    assert.throws(() => client.receiveAssign(v4(2)), rule('parity'));
    assert.deepEqual(client.receiveAssign(v4(3)), { action: 'ack', closeOwn: null });
  });

  it('refuses context ID 0 in ASSIGN and CLOSE', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    assert.throws(() => proxy.receiveAssign(unc(0)), rule('zero-id'));
    assert.throws(() => proxy.receiveClose(0), rule('zero-id'));
  });

  it('treats a repeated ID as malformed, also after it was closed', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.receiveAssign(v4(2));
    assert.throws(() => proxy.receiveAssign(v4(2, 9)), rule('duplicate-id'));
    proxy.receiveClose(2);
    assert.throws(() => proxy.receiveAssign(v4(2, 9)), rule('duplicate-id'));
  });

  it('allows one uncompressed context at a time, only from the client', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    assert.deepEqual(proxy.receiveAssign(unc(2)), { action: 'ack', closeOwn: null });
    assert.equal(proxy.uncompressed, 2);
    assert.throws(() => proxy.receiveAssign(unc(4)), rule('second-uncompressed'));
    proxy.receiveClose(2);
    assert.deepEqual(proxy.receiveAssign(unc(6)), { action: 'ack', closeOwn: null });
    assert.throws(() => proxy.assignLocal(unc(1)), rule('uncompressed-from-proxy'));
    const client = new BindContexts({ side: 'client' });
    assert.throws(() => client.receiveAssign(unc(1)), rule('uncompressed-from-proxy'));
  });

  it('treats a second peer registration of the same address and port as malformed', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.receiveAssign(v4(2));
    assert.throws(() => proxy.receiveAssign(v4(4)), rule('duplicate-target'));
    assert.throws(() => proxy.assignLocal(v4(1)), rule('duplicate-target'));
    // Another port is another target.
    assert.equal(proxy.receiveAssign(v4(4, 444)).action, 'ack');
  });

  it('on simultaneous registrations of one target, the proxy-opened context is the one closed', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.assignLocal(v4(1));
    assert.deepEqual(proxy.receiveAssign(v4(2)), { action: 'ack', closeOwn: 1 });
    assert.equal(proxy.get(1), undefined);
    assert.equal(proxy.get(2)?.openedBy, 'client');
    const client = new BindContexts({ side: 'client' });
    client.assignLocal(v4(2));
    assert.deepEqual(client.receiveAssign(v4(1)), { action: 'close', reason: 'same-target' });
    assert.equal(client.get(2)?.openedBy, 'client');
  });

  it('accepts an ACK only for its own registration; an ACK without ASSIGN is malformed', () => {
    const client = new BindContexts({ side: 'client' });
    client.assignLocal(v4(2));
    assert.equal(client.get(2)?.pending, true);
    client.receiveAck(2);
    assert.equal(client.get(2)?.pending, false);
    assert.throws(() => client.receiveAck(4), rule('ack-without-assign'));
    client.receiveAssign(v4(3, 1));
    assert.throws(() => client.receiveAck(3), rule('ack-without-assign'));
    client.ackLocal(3);
    assert.throws(() => client.ackLocal(2), rule('ack-without-assign'));
    assert.throws(() => client.ackLocal(5), rule('ack-without-assign'));
    // An ACK that crossed this side's CLOSE is not an error.
    client.closeLocal(2);
    client.receiveAck(2);
  });

  it('discards datagrams for closed and unknown contexts silently, counting them', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.receiveAssign(unc(2));
    proxy.receiveAssign(v4(4));
    assert.deepEqual(proxy.routeDatagram(0), { kind: 'udp' });
    assert.deepEqual(proxy.routeDatagram(2), { kind: 'uncompressed' });
    assert.deepEqual(proxy.routeDatagram(4), { kind: 'compressed', target: { ipVersion: 4, address: '192.0.2.1', port: 443 } });
    proxy.closeLocal(4);
    assert.deepEqual(proxy.routeDatagram(4), { kind: 'discard', reason: 'closed' });
    assert.deepEqual(proxy.routeDatagram(4), { kind: 'discard', reason: 'closed' });
    assert.deepEqual(proxy.routeDatagram(8), { kind: 'discard', reason: 'unknown' });
    assert.equal(proxy.counters.discardedClosed, 2);
    assert.equal(proxy.counters.discardedUnknown, 1);
  });

  it('refuses context 0 datagrams when the target was *', () => {
    const proxy = new BindContexts({ side: 'proxy', wildcardTarget: true });
    assert.throws(() => proxy.routeDatagram(0), rule('zero-id-datagram'));
  });

  it('keeps the proxy from opening compressed contexts once the uncompressed one is closed', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.receiveAssign(unc(2));
    proxy.assignLocal(v4(1));
    proxy.receiveClose(2);
    assert.throws(() => proxy.assignLocal(v4(3, 9)), rule('after-uncompressed-closed'));
    const client = new BindContexts({ side: 'client' });
    client.assignLocal(unc(2));
    client.closeLocal(2);
    assert.deepEqual(client.receiveAssign(v4(1)), { action: 'close', reason: 'after-uncompressed-closed' });
  });

  it('rejects peer registrations beyond maxContexts, counting them, and refuses its own with LIMIT_EXCEEDED', () => {
    const proxy = new BindContexts({ side: 'proxy', maxContexts: 2 });
    assert.equal(proxy.receiveAssign(v4(2, 1)).action, 'ack');
    assert.equal(proxy.receiveAssign(v4(4, 2)).action, 'ack');
    assert.deepEqual(proxy.receiveAssign(v4(6, 3)), { action: 'close', reason: 'limit' });
    assert.deepEqual(proxy.receiveAssign(v4(8, 4)), { action: 'close', reason: 'limit' });
    assert.equal(proxy.counters.rejectedOverLimit, 2);
    assert.equal(proxy.size, 2);
    assert.throws(() => proxy.assignLocal(v4(1, 5)), (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.LIMIT_EXCEEDED);
    // A rejected ID stays used.
    assert.throws(() => proxy.receiveAssign(v4(6, 3)), rule('duplicate-id'));
    proxy.receiveClose(2);
    assert.equal(proxy.receiveAssign(v4(10, 6)).action, 'ack');
  });

  it('remembers a bounded number of closed IDs, counting the forgotten ones', () => {
    const client = new BindContexts({ side: 'client', maxContexts: 2, maxClosedRemembered: 2 });
    for (const id of [2, 4, 6]) {
      client.assignLocal(v4(id, id));
      client.closeLocal(id);
    }
    assert.equal(client.counters.forgottenClosed, 1);
    assert.deepEqual(client.routeDatagram(2), { kind: 'discard', reason: 'unknown' });
    assert.deepEqual(client.routeDatagram(6), { kind: 'discard', reason: 'closed' });
    // A late ACK for a forgotten ID of its own is not mistaken for an ACK without ASSIGN.
    client.receiveAck(2);
    assert.throws(() => client.receiveAck(8), rule('ack-without-assign'));
    assert.throws(() => new BindContexts({ side: 'client', maxContexts: 0 }), (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION);
  });

  it('counts a CLOSE for an ID never seen and ignores a repeated one', () => {
    const proxy = new BindContexts({ side: 'proxy' });
    proxy.receiveClose(7);
    proxy.receiveAssign(v4(2));
    proxy.receiveClose(2);
    proxy.receiveClose(2);
    assert.equal(proxy.counters.unknownCloses, 1);
    assert.equal(proxy.size, 0);
  });
});
