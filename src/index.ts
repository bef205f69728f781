/** Public library API of udp-tunnel. The CLI in src/cli is wiring around these. */
export * from './tunnel/errors.js';
export * from './tunnel/codec/varint.js';
export * from './tunnel/codec/capsule.js';
export * from './tunnel/codec/capsule-decoder.js';
export * from './tunnel/codec/datagram.js';
export * from './tunnel/address.js';
export * from './tunnel/uri-template.js';
export * from './tunnel/proxy-status.js';
export * from './tunnel/server/connect-udp-request.js';
export * from './tunnel/datagram-channel.js';
export * from './tunnel/diagnostics.js';
export * from './tunnel/client.js';
export * from './tunnel/server/tunnel-server.js';
export * from './tunnel/local-resource.js';
export * from './tunnel/client-config.js';
export * from './tunnel/forward-group.js';
export * from './tunnel/header-template.js';
export * from './tunnel/proxy-list.js';
export * from './tunnel/transport/failover.js';
export * from './tunnel/policy.js';
export * from './tunnel/auth.js';
export * from './tunnel/resolver.js';
export type * from './tunnel/transport/types.js';
export { H2ConnectUdpTransport, H2Pool } from './tunnel/transport/h2.js';
export * from './inspect/index.js';
export * from './tunnel/proxy-probe.js';
export * from './tunnel/tunnel-check.js';
export type * from './tunnel/failure-hint.js';
export {
  BIND_DRAFT,
  CONNECT_UDP_BIND_HEADER,
  PROXY_PUBLIC_ADDRESS_HEADER,
  decodeCompressionAck,
  decodeCompressionAssign,
  decodeCompressionClose,
  decodeUncompressedDatagram,
  encodeCompressionAck,
  encodeCompressionAssign,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  formatConnectUdpBind,
  formatIpPort,
  formatProxyPublicAddress,
  parseConnectUdpBind,
  parseIpPort,
  parseProxyPublicAddress,
} from './tunnel/codec/bind.js';
export type { BindTarget, CompressionAssign, ConnectUdpBindResult, ProxyPublicAddressResult, UncompressedDatagram } from './tunnel/codec/bind.js';
export { BindContexts, DEFAULT_MAX_BIND_CONTEXTS } from './tunnel/bind-contexts.js';
export type * from './tunnel/bind-contexts.js';
export * from './tunnel/bound-tunnel.js';
export * from './tunnel/expose.js';
