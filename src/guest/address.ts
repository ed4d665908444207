// Where a guest's stream comes from. The identity of a guest is the transport its bytes arrive on,
// never what they say: a Unix socket the agent listens on for that guest alone.
//
//   unix:PATH    a byte stream: the hybrid vsock of Firecracker and Cloud Hypervisor (the guest
//                connects to a vsock port, the VMM connects to PATH = <uds_path>_<port>), or a test
//   serial:PATH  a virtio-serial port: QEMU's chardev in client mode connects to PATH; there is
//                no connect from the guest's side, so the host speaks first (RESYNC)

import { isAbsolute, normalize } from 'node:path';
import { SocklbError } from '../errors.js';

export interface GuestAddress {
  transport: 'unix' | 'serial';
  path: string;
}

/** Reads `unix:PATH` or `serial:PATH`; anything else is refused in one sentence. */
export function parseGuestAddress(text: string, id: string): GuestAddress {
  const match = /^(unix|serial):(.+)$/.exec(text);
  if (match?.[1] !== 'unix' && match?.[1] !== 'serial') {
    const vsock = text.startsWith('vsock:') ? ": vhost-vsock CIDs are not served yet; use the VMM's Unix socket (unix:PATH)" : '';
    throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: address ${JSON.stringify(text)} is not unix:PATH or serial:PATH${vsock}`);
  }
  const path = match[2]!;
  if (!isAbsolute(path)) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: ${path} is not an absolute path`);
  return { transport: match[1], path: normalize(path) };
}

export function formatGuestAddress(address: GuestAddress): string {
  return `${address.transport}:${address.path}`;
}
