/**
 * Metrics for the daemon: built from the running data path, served while it
 * runs (when metricsEnabled), closed on stop.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import type { SockaccelConfig } from '../config';
import type { DataPath } from '../loader';
import { mapInfo } from '../libbpf';
import { SHARED_MAPS } from '../pins';
import { readStats } from '../stats';
import { formatListenAddress, isLoopback, parseListenAddress } from './address';
import { createDaemonMetrics } from './registry';
import { MetricsServer, startMetricsServer } from './server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version;

/** Capacity of every map that has one (socket storage has none), by pin name. */
export function mapCapacities(dataPath: DataPath): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, fd] of Object.entries(dataPath.mapFds) as [keyof typeof SHARED_MAPS, number][]) {
    const max = mapInfo(fd).maxEntries;
    if (max > 0) out[SHARED_MAPS[name]] = max;
  }
  return out;
}

export async function startDaemonMetrics(config: Pick<SockaccelConfig, 'metricsAddress'>, dataPath: DataPath, log: Logger): Promise<MetricsServer> {
  const metrics = createDaemonMetrics(() => readStats(dataPath.mapFds.sa_stats), {
    version: VERSION,
    kernel: os.release(),
    programIds: dataPath.programIds,
    capacities: mapCapacities(dataPath),
  });
  const server = await startMetricsServer(parseListenAddress(config.metricsAddress), metrics.registry, metrics.refresh);
  const address = formatListenAddress(server.address);
  if (isLoopback(server.address.host)) log.info({ address }, 'metrics listening');
  else log.warn({ address }, 'metrics listening beyond loopback: anyone who reaches this address can read the counters');
  return server;
}
