import type { Endpoint } from './types.js';

/**
 * The endpoints that receive new connections: the ready ones. This is the
 * one place the traffic rule lives, so that serving/terminating fallback can
 * extend it later without touching its callers.
 */
export function usableEndpoints(endpoints: readonly Endpoint[]): Endpoint[] {
  return endpoints.filter((endpoint) => endpoint.ready);
}
