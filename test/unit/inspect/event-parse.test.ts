import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { CapsuleView } from '../../../src/inspect/capsule-view.js';
import { parseInspectEvent, parseInspectNdjson } from '../../../src/inspect/event-parse.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { headerListFromRaw, requestEvent, requestHeadFromHttp2, responseEvent } from '../../../src/inspect/http-fields.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';

function sampleEvents(): InspectEvent[] {
  const headers = headerListFromRaw([':method', 'CONNECT', ':protocol', 'connect-udp', ':path', '/.well-known/masque/udp/h/1/', 'capsule-protocol', '?1']);
  const view = new CapsuleView({ session: 's', dir: '->', maxCapsuleLength: 100 });
  return [
    requestEvent('s', 0, requestHeadFromHttp2(headers)),
    responseEvent('s', 1, '2', 200, [[':status', '200']]),
    ...view.push(Buffer.from('000300aabb' + '40400107' + '1700' + 'c02000000000000100' + '00ff', 'hex'), 2),
    ...view.end(3),
    { event: 'close', tMs: 3, session: 's', reason: 'end-stream', detail: null },
  ];
}

describe('inspect/http-fields: headerListFromRaw', () => {
  it('pairs up a flat raw header array, keeping order and duplicates', () => {
    assert.deepEqual(headerListFromRaw(['A', '1', 'b', '2', 'A', '3']), [
      ['A', '1'],
      ['b', '2'],
      ['A', '3'],
    ]);
    assert.deepEqual(headerListFromRaw(['odd']), []);
  });
});

describe('parseInspectEvent / parseInspectNdjson', () => {
  it('accepts every kind of event the decoders produce, through NDJSON and back', () => {
    const events = sampleEvents();
    assert.deepEqual(
      events.map((e) => e.event),
      ['request', 'response', 'capsule', 'capsule', 'capsule', 'capsule', 'error', 'end', 'close'],
    );
    const ndjson = events.map((e) => JSON.stringify(e)).join('\n') + '\n\n';
    assert.deepEqual(parseInspectNdjson(ndjson), JSON.parse(JSON.stringify(events)));
  });

  const bad: Array<[string, unknown, string]> = [
    ['not an object', [1], 'is not a JSON object'],
    ['unknown type', { event: 'frame', tMs: 0, session: 's' }, 'has unknown event type "frame"'],
    ['missing t', { event: 'close', session: 's', reason: 'error', detail: null }, "field 'tMs' must be a number"],
    ['bad dir', { event: 'end', tMs: 0, session: 's', dir: '=>', clean: true, totalBytes: 0, capsules: 0, ignoredBytes: 0 }, "end field 'dir'"],
    ['bad close reason', { event: 'close', tMs: 0, session: 's', reason: 'because', detail: null }, "close field 'reason'"],
    [
      'bad payload hex',
      { event: 'capsule', tMs: 0, session: 's', dir: '->', offset: 0, type: 0, typeName: 'DATAGRAM', length: 1, typeWidth: 1, lengthWidth: 1, nonMinimal: false, previewTruncated: false, payloadHex: 'xyz' },
      "capsule field 'payloadHex' has the wrong type",
    ],
  ];
  for (const [name, value, fragment] of bad) {
    it(`rejects ${name}`, () => {
      assert.throws(
        () => parseInspectEvent(value),
        (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_INPUT') && e.message.includes(fragment),
      );
    });
  }

  it('names the line of a bad NDJSON record', () => {
    const good = JSON.stringify(sampleEvents()[0]);
    assert.throws(
      () => parseInspectNdjson(`${good}\n\n{"event":`),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_INPUT') && e.details['line'] === 3 && e.message.startsWith('inspect event line 3: is not valid JSON'),
    );
    assert.throws(
      () => parseInspectNdjson(`${good}\n{"event":"end"}`),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_INPUT') && e.details['line'] === 2,
    );
  });
});
