// Host addresses handed out in order from a pod subnet, for either family.
import { isIPv4, isIPv6 } from 'node:net';
import { formatIP, ipToBytes } from '../../src/model/ip.js';
import type { IPFamily } from '../../src/model/types.js';

export class Subnet {
  readonly family: IPFamily;
  readonly prefixLength: number;
  /** The network address as a 128-bit number (IPv4 in its IPv4-mapped form, as ipToBytes gives it). */
  readonly #network: bigint;
  readonly #hostCount: bigint;

  constructor(readonly cidr: string) {
    const [address = '', length = ''] = cidr.split('/');
    if (!isIPv4(address) && !isIPv6(address)) throw new Error(`subnet ${JSON.stringify(cidr)}: not an IP address`);
    this.family = isIPv4(address) ? 'IPv4' : 'IPv6';
    const bits = this.family === 'IPv4' ? 32 : 128;
    this.prefixLength = Number(length);
    // At least two hosts besides the network address, and (IPv4) the broadcast address.
    if (!/^\d+$/.test(length) || this.prefixLength > bits - 2) {
      throw new Error(`subnet ${cidr}: prefix length must be 0..${bits - 2}`);
    }
    this.#network = toBigInt(ipToBytes(address));
    this.#hostCount = 1n << BigInt(bits - this.prefixLength);
    if (this.#network % this.#hostCount !== 0n) throw new Error(`subnet ${cidr}: host bits are set; give the network address`);
  }

  /** The index-th address of the subnet (0 is the network address itself). */
  host(index: number): string {
    const last = this.family === 'IPv4' ? this.#hostCount - 2n : this.#hostCount - 1n;
    if (index < 1 || BigInt(index) > last) throw new Error(`subnet ${this.cidr}: no host number ${index}`);
    return formatIP(fromBigInt(this.#network + BigInt(index)), this.family);
  }
}

function toBigInt(bytes: Buffer): bigint {
  return BigInt(`0x${bytes.toString('hex')}`);
}

function fromBigInt(value: bigint): Buffer {
  return Buffer.from(value.toString(16).padStart(32, '0'), 'hex');
}
