/**
 * Metrics for the daemon (when metricsEnabled): the address is taken before
 * the data path loads, the metrics are served once it runs, and the server
 * closes on stop.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import type { SockaccelConfig } from '../config/config';
import type { DataPath } from '../daemon/loader';
import { mapInfo } from '../kernel/libbpf';
import { SHARED_MAPS } from '../kernel/pins';
import { readStats } from '../kernel/stats';
import { formatListenAddress, isLoopback, parseListenAddress } from './address';
import { createDaemonMetrics, type AdaptiveSnapshot } from './registry';
import { bindMetricsServer, MetricsServer } from './server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version;

/** Capacity of every map that can fill up (not socket storage, not the one-slot arrays), by pin name. */
function mapCapacities(dataPath: DataPath): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, fd] of Object.entries(dataPath.mapFds) as [keyof typeof SHARED_MAPS, number][]) {
    const max = mapInfo(fd).maxEntries;
    if (max > 1) out[SHARED_MAPS[name]] = max;
  }
  return out;
}

export function bindDaemonMetrics(config: Pick<SockaccelConfig, 'metricsAddress'>): Promise<MetricsServer> {
  return bindMetricsServer(parseListenAddress(config.metricsAddress));
}

export function serveDaemonMetrics(server: MetricsServer, dataPath: DataPath, log: Logger, adaptive?: () => AdaptiveSnapshot): void {
  const metrics = createDaemonMetrics(
    () => readStats(dataPath.mapFds.sa_stats),
    {
      version: VERSION,
      kernel: os.release(),
      programIds: dataPath.programIds,
      capacities: mapCapacities(dataPath),
    },
    adaptive,
  );
  server.serve(metrics.registry, metrics.refresh);
  const address = formatListenAddress(server.address);
  if (isLoopback(server.address.host)) log.info({ address }, 'metrics listening');
  else log.warn({ address }, 'metrics listening beyond loopback: anyone who reaches this address can read the counters');
}
