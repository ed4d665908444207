import type { Backend, FrontendKey } from './types.js';

/** `address:port` with IPv6 in brackets, as people and logs write it. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The identity of a frontend as one string: `10.96.0.10:53/UDP`. */
export function frontendId(key: FrontendKey): string {
  return `${hostPort(key.address, key.port)}/${key.protocol}`;
}

/** A backend as one string: `10.244.0.5:8080`. */
export function backendText(backend: Backend): string {
  return hostPort(backend.address, backend.port);
}

/**
 * The first of several claimants in string order (the manifest paths defining one object): who
 * wins a conflict must not depend on the order in which objects arrived.
 */
export function firstInOrder(values: Iterable<string>): string | undefined {
  let first: string | undefined;
  for (const value of values) if (first === undefined || value < first) first = value;
  return first;
}
