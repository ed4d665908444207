// The agent's two small HTTP endpoints (metrics, health), on kube-proxy's
// default ports and bound to loopback unless told otherwise.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** kube-proxy's metrics port, on loopback: where /metrics and /statusz are served, and `socklb status` asks. */
export const DEFAULT_METRICS_BIND_ADDRESS = '127.0.0.1:10249';

export type Route = () => Promise<{ status: number; contentType: string; body: string }>;

/** Parses `127.0.0.1:10249` or `[::1]:10249`. */
export function parseBindAddress(text: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host, port };
}

/** Serves GET routes by path; resolves with the server once it listens (port 0 picks one). */
export async function serveRoutes(bind: { host: string; port: number }, routes: Record<string, Route>): Promise<Server> {
  const server = createServer((request, response) => {
    const route = request.method === 'GET' ? routes[new URL(request.url ?? '/', 'http://localhost').pathname] : undefined;
    if (!route) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    route().then(
      ({ status, contentType, body }) => response.writeHead(status, { 'content-type': contentType }).end(body),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(bind.port, bind.host, () => resolve());
  });
  return server;
}

export function listeningPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
