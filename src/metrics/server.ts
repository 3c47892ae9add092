/**
 * The HTTP endpoint Prometheus scrapes: GET /metrics, nothing else.
 *
 * Bound in two steps: the address early, before anything is loaded into the
 * kernel, so that a taken or invalid address fails the start with nothing
 * attached; the metrics once the data path is up (until then: 503).
 */
import http from 'node:http';
import type { Registry } from 'prom-client';
import { EnvironmentError } from '../common/errors';
import { formatListenAddress, ListenAddress } from './address';

export interface MetricsServer {
  /** Where it listens, with the port the kernel chose if 0 was asked. */
  readonly address: ListenAddress;
  /** Starts answering scrapes from `registry`, calling `refresh` before each. */
  serve(registry: Registry, refresh: () => void): void;
  /** Idempotent. */
  close(): Promise<void>;
}

export async function bindMetricsServer(listen: ListenAddress): Promise<MetricsServer> {
  let source: { registry: Registry; refresh: () => void } | undefined;
  const server = http.createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('sockaccel: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (!source) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('sockaccel: starting\n');
      return;
    }
    const { registry, refresh } = source;
    refresh();
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`sockaccel: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new EnvironmentError(`cannot serve metrics on ${formatListenAddress(listen)}: ${err.code ?? err.message}`, {
          hint: 'choose another metricsAddress (host:port), or free that port',
        }),
      ),
    );
    server.listen(listen.port, listen.host, resolve);
  });
  const bound = server.address() as { address: string; port: number };
  let closing: Promise<void> | undefined;
  return {
    address: { host: bound.address, port: bound.port },
    serve(registry, refresh) {
      source = { registry, refresh };
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // a scraper's keep-alive connection would hold close() open
        server.closeAllConnections();
      })),
  };
}
