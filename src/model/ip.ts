import { isIPv6 } from 'node:net';
import type { IPAddress, IPFamily } from './types.js';

/** The family of a canonical or raw address, undefined when it is not one. */
export function ipFamily(text: string): IPFamily | undefined {
  if (isDottedQuad(text)) return 'IPv4';
  if (isIPv6(text)) return 'IPv6';
  return undefined;
}

/**
 * Canonical text of an address (RFC 5952 for IPv6, no leading zeros for IPv4),
 * so that two spellings of one address compare equal; undefined when `text`
 * is not an address.
 */
export function canonicalIP(text: string): IPAddress | undefined {
  // isDottedQuad refuses leading zeros, so an IPv4 address it accepts is canonical already: the
  // bytes' round trip would cost a buffer per address read (40000 at 10000 Services).
  if (isDottedQuad(text)) return text;
  if (!isIPv6(text)) return undefined;
  return formatIP(ipToBytes(text), 'IPv6');
}

/**
 * The canonical form of a dotted quad written with leading zeros (`010.001.002.003`), read as
 * decimal, never octal as inet_aton would read it; undefined when `text` is no such quad.
 */
export function ipv4WithLeadingZeros(text: string): IPAddress | undefined {
  const octets = text.split('.');
  if (octets.length !== 4 || !octets.every((octet) => /^\d+$/.test(octet) && Number(octet) <= 255)) return undefined;
  return octets.map(Number).join('.');
}

/**
 * 16 bytes in network order; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), the
 * form the datapath keys use.
 */
export function ipToBytes(text: string): Buffer {
  return writeIP(text, Buffer.alloc(16), 0);
}

/**
 * ipToBytes into `into` at `offset`, whose 16 bytes must be zero; `into`. The map codecs write
 * addresses in place: a buffer of its own per address costs an allocation V8 counts as external
 * memory, which at 10000 Services' map writes drove the garbage collector.
 */
export function writeIP(text: string, into: Buffer, offset: number): Buffer {
  if (isDottedQuad(text)) {
    into[offset + 10] = 0xff;
    into[offset + 11] = 0xff;
    writeIPv4(text, into, offset + 12);
    return into;
  }
  if (!isIPv6(text)) throw new Error(`not an IP address: ${JSON.stringify(text)}`);
  const bytes = into;
  let groups = text;
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(groups);
  if (dotted?.[1]) {
    const quad = Buffer.alloc(4);
    writeIPv4(dotted[1], quad, 0);
    groups = `${groups.slice(0, dotted.index)}${quad.readUInt16BE(0).toString(16)}:${quad.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = groups.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = 8 - headGroups.length - tailGroups.length;
  const all = [...headGroups, ...Array<string>(tail === undefined ? 0 : zeros).fill('0'), ...tailGroups];
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), offset + i * 2));
  return bytes;
}

/** Text of 16 network-order bytes; IPv4-mapped addresses print as IPv4 when `family` says so. */
export function formatIP(bytes: Uint8Array, family: IPFamily): IPAddress {
  if (family === 'IPv4') return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // RFC 5952: the longest run of two or more zero groups, the first one on a tie, becomes '::'.
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Whether 16 bytes hold an IPv4-mapped address. */
export function isIPv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/**
 * node:net's isIPv4, by hand: four decimal octets of 0-255, without leading zeros. Its RegExp
 * showed in profiles of a first sync, which checks every address of every Service and endpoint
 * (and often twice: canonicalIP, then ipFamily).
 */
function isDottedQuad(text: string): boolean {
  if (text.length < 7 || text.length > 15) return false;
  let octets = 0;
  let digits = 0;
  let octet = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : DOT;
    if (code === DOT) {
      if (digits === 0 || ++octets > 4) return false;
      digits = 0;
      octet = 0;
    } else if (code >= ZERO && code <= NINE) {
      if (digits > 0 && octet === 0) return false;
      octet = octet * 10 + (code - ZERO);
      if (octet > 255) return false;
      digits++;
    } else return false;
  }
  return octets === 4;
}

/** A dotted quad that isDottedQuad accepted, digit by digit: no array of its parts. */
function writeIPv4(text: string, into: Uint8Array, offset: number): void {
  let octet = 0;
  let index = offset;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === DOT) {
      into[index++] = octet;
      octet = 0;
    } else octet = octet * 10 + (code - ZERO);
  }
  into[index] = octet;
}

const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

export interface Cidr {
  /** The network address, 16 bytes (IPv4-mapped for IPv4). */
  network: Buffer;
  /** Prefix length counted over the 16 bytes (IPv4's /24 is 96 + 24). */
  bits: number;
  family: IPFamily;
}

/** Parses `10.0.0.0/8` or `fd00::/64`; undefined when it is not a CIDR. */
export function parseCidr(text: string): Cidr | undefined {
  const [address = '', prefix, extra] = text.split('/');
  const family = ipFamily(address);
  const length = Number(prefix);
  const maxLength = family === 'IPv4' ? 32 : 128;
  if (family === undefined || extra !== undefined || prefix === undefined || !/^\d+$/.test(prefix) || length > maxLength) return undefined;
  return { network: ipToBytes(address), bits: length + (family === 'IPv4' ? 96 : 0), family };
}

/**
 * The canonical text of a CIDR, so that two spellings of one range compare equal: its network
 * address (the bits past the prefix cleared, as Go's net.ParseCIDR reads `10.96.0.5/12`) and its
 * prefix length, an IPv4-mapped IPv6 range of /96 or longer written as the IPv4 range it is (the
 * datapath keys IPv4 as exactly those bytes). Undefined when `text` is not a CIDR.
 */
export function canonicalCidr(text: string): string | undefined {
  const cidr = parseCidr(text);
  if (cidr === undefined) return undefined;
  const network = Buffer.from(cidr.network);
  for (let index = 0; index < 16; index++) {
    const kept = Math.min(8, Math.max(0, cidr.bits - index * 8));
    network[index] = (network[index] ?? 0) & (0xff << (8 - kept)) & 0xff;
  }
  const ipv4 = cidr.bits >= 96 && isIPv4Mapped(network);
  return `${formatIP(network, ipv4 ? 'IPv4' : 'IPv6')}/${ipv4 ? cidr.bits - 96 : cidr.bits}`;
}

/** Whether `address` lies inside `cidr` (families must match). */
export function cidrContains(cidr: Cidr, address: IPAddress): boolean {
  if (ipFamily(address) !== cidr.family) return false;
  const bytes = ipToBytes(address);
  for (let bit = 0; bit < cidr.bits; bit += 8) {
    const mask = cidr.bits - bit >= 8 ? 0xff : (0xff << (8 - (cidr.bits - bit))) & 0xff;
    const index = bit / 8;
    if (((bytes[index] ?? 0) & mask) !== ((cidr.network[index] ?? 0) & mask)) return false;
  }
  return true;
}
