// Chain names exactly as kube-proxy derives them, so that the rulesets loaded here have kube-proxy's
// shape down to the names (pkg/proxy/iptables and pkg/proxy/nftables, proxier.go):
//   iptables  KUBE-SVC-<16 chars>  base32(sha256(servicePortName + protocol))
//             KUBE-SEP-<16 chars>  base32(sha256(servicePortName + protocol + "ip:port"))
//   nftables  service-<8 chars>-ns/name/protocol/port
//             endpoint-<8 chars>-ns/name/protocol/port__ip/port
// with servicePortName "namespace/name:portName" and the protocol in lower case.
import { createHash } from 'node:crypto';

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (Go's base32.StdEncoding), without the padding kube-proxy cuts off anyway. */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32_ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function sha256Base32(text: string): string {
  return base32(createHash('sha256').update(text).digest());
}

/** What kube-proxy calls a ServicePortName, and the protocol as it lower-cases it. */
export interface ServicePortName {
  namespace: string;
  name: string;
  /** The Service port's name; '' for an unnamed port. */
  port: string;
  protocol: 'tcp' | 'udp';
}

/** "namespace/name:port" (":port" left out for an unnamed port), as ServicePortName.String(). */
export function servicePortNameString(spn: ServicePortName): string {
  return `${spn.namespace}/${spn.name}${spn.port === '' ? '' : `:${spn.port}`}`;
}

/** pkg/proxy/iptables portProtoHash. */
export function portProtoHash(servicePortName: string, protocol: string): string {
  return sha256Base32(servicePortName + protocol).slice(0, 16);
}

export function iptablesServiceChain(spn: ServicePortName): string {
  return `KUBE-SVC-${portProtoHash(servicePortNameString(spn), spn.protocol)}`;
}

/** `endpoint` is "ip:port". */
export function iptablesEndpointChain(spn: ServicePortName, endpoint: string): string {
  return `KUBE-SEP-${sha256Base32(servicePortNameString(spn) + spn.protocol + endpoint).slice(0, 16)}`;
}

/** knftables.NameLengthMax (256) less the longest prefix kube-proxy puts in front (16). */
const NFT_CHAIN_BASE_MAX = 240;

/** pkg/proxy/nftables hashAndTruncate. */
function hashAndTruncate(name: string): string {
  const hashed = `${sha256Base32(name).slice(0, 8)}-${name}`;
  return hashed.length > NFT_CHAIN_BASE_MAX ? `${hashed.slice(0, NFT_CHAIN_BASE_MAX - 3)}...` : hashed;
}

export function nftServiceChain(spn: ServicePortName): string {
  return `service-${hashAndTruncate(`${spn.namespace}/${spn.name}/${spn.protocol}/${spn.port}`)}`;
}

/** `endpoint` is "ip:port"; an IPv6 address has its colons turned into dots, as kube-proxy does. */
export function nftEndpointChain(spn: ServicePortName, endpoint: string): string {
  const separator = endpoint.lastIndexOf(':');
  const ip = endpoint
    .slice(0, separator)
    .replace(/^\[|\]$/g, '')
    .replaceAll(':', '.');
  const port = endpoint.slice(separator + 1);
  return `endpoint-${hashAndTruncate(`${spn.namespace}/${spn.name}/${spn.protocol}/${spn.port}__${ip}/${port}`)}`;
}
