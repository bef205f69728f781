import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PeerTable } from '../../../src/tunnel/peer-table.js';

describe('PeerTable', () => {
  it('finds entries by address and port, keeps peers sharing a port apart, and forgets removed ones', () => {
    const t = new PeerTable<{ address: string; port: number; id: number }>();
    const a = { address: '127.0.0.1', port: 5000, id: 1 };
    const b = { address: '::1', port: 5000, id: 2 };
    const c = { address: '127.0.0.1', port: 5001, id: 3 };
    t.add(a);
    t.add(b);
    t.add(c);
    assert.equal(t.get('127.0.0.1', 5000), a);
    assert.equal(t.get('::1', 5000), b);
    assert.equal(t.get('127.0.0.1', 5001), c);
    assert.equal(t.get('127.0.0.2', 5000), undefined);
    assert.equal(t.get('::1', 5001), undefined);
    t.delete(a);
    assert.equal(t.get('127.0.0.1', 5000), undefined);
    assert.equal(t.get('::1', 5000), b);
    t.delete(a);
    t.delete(b);
    assert.equal(t.get('::1', 5000), undefined);
    assert.equal(t.get('127.0.0.1', 5001), c);
    t.add(a);
    assert.equal(t.get('127.0.0.1', 5000), a);
  });
});
