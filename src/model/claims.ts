// Who serves a frontend (an address, a port, a protocol) that several Services claim. In a
// cluster the API server keeps cluster IPs and node ports unique, each allocated to one Service;
// an external IP or a load balancer's ingress IP is whatever the Service's author or a controller
// wrote, another Service's cluster IP included (CVE-2020-8554's hijack). So:
//
//   1. a cluster IP or node port claim beats an external IP or load-balancer IP claim;
//   2. among claims of one rank, the Service that serves the frontend keeps it, so that a
//      newcomer never cuts off a Service in use (also across a restart: the agent says who serves);
//   3. then the oldest creationTimestamp; a Service without one (a hand-written manifest) counts
//      as newer than any that has one;
//   4. then the first by namespace/name.
//
// The outcome does not depend on the order in which objects arrived. Pure.

import type { ClaimKind } from './types.js';

export interface Claim {
  /** `namespace/name` of the Service claiming the frontend. */
  service: string;
  kind: ClaimKind;
  /** The Service's creationTimestamp (ms since the epoch); undefined when it has none. */
  createdAt: number | undefined;
}

/** Allocated addresses before stated ones; kinds of one rank are equals. */
const RANK: Record<ClaimKind, number> = { 'cluster IP': 0, 'node port': 0, 'external IP': 1, 'load-balancer IP': 1 };

/**
 * Negative when `a` wins over `b`, positive when `b` wins, 0 for claims of one Service of one
 * rank. `incumbent` is the `namespace/name` of the Service serving the frontend now, if any.
 */
export function compareClaims(a: Claim, b: Claim, incumbent: string | undefined): number {
  return (
    RANK[a.kind] - RANK[b.kind] ||
    Number(b.service === incumbent) - Number(a.service === incumbent) ||
    compareAges(a.createdAt, b.createdAt) ||
    (a.service < b.service ? -1 : a.service > b.service ? 1 : 0)
  );
}

/** The claim that serves the frontend; of one Service's several claims, the first of the highest rank. */
export function winningClaim<C extends Claim>(claims: readonly C[], incumbent: string | undefined): C | undefined {
  let winner: C | undefined;
  for (const claim of claims) if (winner === undefined || compareClaims(claim, winner, incumbent) < 0) winner = claim;
  return winner;
}

/** Older first; without a time after any time. */
function compareAges(a: number | undefined, b: number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  return a - b;
}
