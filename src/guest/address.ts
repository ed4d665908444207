// Where a guest's stream comes from. The identity of a guest is the transport its bytes arrive on,
// never what they say: a Unix socket the agent listens on for that guest alone, or the vsock
// context id (CID) the host's kernel gives the connection.
//
//   unix:PATH    a byte stream: the hybrid vsock of Firecracker and Cloud Hypervisor (the guest
//                connects to a vsock port, the VMM connects to PATH = <uds_path>_<port>), or a test
//   serial:PATH  a virtio-serial port: QEMU's chardev in client mode connects to PATH; there is
//                no connect from the guest's side, so the host speaks first (RESYNC)
//   vsock:CID    vhost-vsock (QEMU, Kata): the guest of that CID connects to the agent's one vsock
//                listener (run --guest-vsock-port); vhost stamps every packet with the guest's CID

import { isAbsolute, normalize } from 'node:path';
import { SocklbError } from '../errors.js';

export type GuestAddress = { transport: 'unix' | 'serial'; path: string } | { transport: 'vsock'; cid: number };

/** The vsock port the agent listens on for vhost-vsock guests unless told otherwise (the applier's --connect vsock:2:PORT). */
export const DEFAULT_GUEST_VSOCK_PORT = 1024;

// 0 is the hypervisor, 2 the host (this agent's own side) and 0xFFFFFFFF "any": no guest has them.
// 1 is VMADDR_CID_LOCAL, vsock_loopback's: a connection from this kernel to itself, for tests.
const VMADDR_CID_LOCAL = 1;
const VMADDR_CID_HOST = 2;
const LARGEST_GUEST_CID = 0xfffffffe;

/** Reads `unix:PATH`, `serial:PATH` or `vsock:CID`; anything else is refused in one sentence. */
export function parseGuestAddress(text: string, id: string): GuestAddress {
  const [, transport, rest = ''] = /^(unix|serial|vsock):(.+)$/.exec(text) ?? [];
  if (transport !== 'unix' && transport !== 'serial' && transport !== 'vsock')
    throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: address ${JSON.stringify(text)} is not unix:PATH, serial:PATH or vsock:CID`);
  if (transport === 'vsock') return { transport, cid: parseGuestCid(rest, id) };
  if (!isAbsolute(rest)) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: ${rest} is not an absolute path`);
  return { transport, path: normalize(rest) };
}

function parseGuestCid(text: string, id: string): number {
  const cid = /^[0-9]{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (cid === VMADDR_CID_LOCAL || (cid > VMADDR_CID_HOST && cid <= LARGEST_GUEST_CID)) return cid;
  throw new SocklbError(
    'SOCKLB_ERR_SANDBOX',
    `guest ${id}: vsock CID ${JSON.stringify(text)} is not a guest's: give a decimal CID, 1 (this kernel's loopback) or 3 to ${LARGEST_GUEST_CID}`,
  );
}

export function formatGuestAddress(address: GuestAddress): string {
  return address.transport === 'vsock' ? `vsock:${address.cid}` : `${address.transport}:${address.path}`;
}

/** Whether two guests would share where their bytes come from: the same path, or the same CID. */
export function sameEndpoint(a: GuestAddress, b: GuestAddress): boolean {
  if (a.transport === 'vsock') return b.transport === 'vsock' && a.cid === b.cid;
  return b.transport !== 'vsock' && a.path === b.path;
}

/** The endpoint in a sentence: "/run/vm1.sock", "vsock CID 3". */
export function describeEndpoint(address: GuestAddress): string {
  return address.transport === 'vsock' ? `vsock CID ${address.cid}` : address.path;
}
