/** Public API of the inspect decoding layer: event schema, capsule stream views, hex input and capture decoding. */
export * from './events.js';
export { CapsuleView, DEFAULT_PREVIEW_BYTES } from './capsule-view.js';
export type { CapsuleViewEvent, CapsuleViewOptions } from './capsule-view.js';
export { parseHexText, MAX_HEX_TEXT_LENGTH, MAX_HEX_OUTPUT_BYTES } from './hex.js';
export {
  fieldValues,
  headerListFromObject,
  headerListFromRaw,
  isCapsuleRequest,
  isInterimStatus,
  http2Status,
  opensTunnel,
  parseCapsuleProtocol,
  parseDefaultTemplateTarget,
  parseStatus,
  requestEvent,
  requestHeadFromHttp1,
  requestHeadFromHttp2,
  responseEvent,
} from './http-fields.js';
export type { RequestHead } from './http-fields.js';
export { errorFacts } from './error-facts.js';
export type { ErrorFacts } from './error-facts.js';
export { HpackDecoder, huffmanDecode, huffmanEncode } from './hpack.js';
export type { HpackDecoderOptions } from './hpack.js';
export { Http1HeadParser, parseHttp1HeadText, DEFAULT_MAX_HEAD_BYTES } from '../tunnel/http/http1-head.js';
export type { Http1CaptureHead, Http1HeadResult, Http1RequestHead, Http1ResponseHead } from '../tunnel/http/http1-head.js';
export { Http2FrameParser, FRAME_TYPE, SETTINGS_ID, http2ErrorName } from './http2-frames.js';
export type { Http2FrameItem, Http2FrameParserOptions } from './http2-frames.js';
export { readCapture, detectCaptureFormat, LINKTYPE } from './pcap.js';
export type { CaptureFile, CaptureFormat, CapturePacket } from './pcap.js';
export { decodeFrame, TCP_FLAG } from './ip-tcp.js';
export type { TcpSegment, FrameDecode, SkipReason } from './ip-tcp.js';
export { TcpReassembler } from './tcp-reassembly.js';
export type { TcpConnection, TcpStreamListener, TcpReassemblyOptions, TcpReassemblyStats, TcpSide, TcpEndReason } from './tcp-reassembly.js';
export { decodeCapture, streamCapture } from './pcap-decode.js';
export type { CaptureDecodeOptions, CaptureDecodeResult, CaptureStats, CaptureWarning } from './pcap-decode.js';
export { parseInspectEvent, parseInspectNdjson } from './event-parse.js';
export { LiveSessionDecoder, DEFAULT_MAX_LIVE_SESSIONS } from './live-decoder.js';
export type { LiveDecoderOptions, LiveDecoderStats } from './live-decoder.js';
export { InspectRelay, RELAY_DEFAULTS, RELAY_PROXY_STATUS_NAME, parseUpstreamUrl, upstreamFailure } from './relay.js';
export type { InspectRelayOptions, RelayCounters, RelayUpstreamTls } from './relay.js';
export { TapInspector, tapCloseReason } from './tap.js';
export type { TapInspectorOptions } from './tap.js';
export {
  RecordingWriter,
  readRecording,
  recordingHeader,
  RECORDING_FORMAT,
  RECORDING_VERSION,
  DEFAULT_RECORDING_BUFFER,
  DEFAULT_MAX_RECORDING_LINE,
} from './recording.js';
export type { RecordingHeader, RecordingItem, RecordingWriterOptions } from './recording.js';
export { trimPreview, redactCredentials } from './event-transform.js';
