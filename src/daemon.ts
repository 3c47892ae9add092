/**
 * `sockaccel run`: probe, load, pin, attach, keep the local-endpoints map
 * current, report; and undo it all in reverse on stop.
 */
import type { Logger } from 'pino';
import { SockaccelConfig } from './config';
import { componentLogger } from './log';
import { probeEnvironment } from './probes';
import { ensureBpffsMounted, preparePinRoot } from './bpffs';
import { resolveCgroupPath } from './cgroup';
import { DataPath, loadDataPath } from './loader';
import { LocalEndpoints } from './local-endpoints';
import { resolveMesh } from './mesh';
import { Lifecycle } from './lifecycle';
import { setLibbpfPrinter } from './libbpf';
import { readStats, summarize } from './stats';

export interface Daemon {
  readonly dataPath: DataPath;
  readonly cgroupPath: string;
  /** Stops accelerating new connections and releases everything we hold. */
  stop(deadlineMs?: number): Promise<boolean>;
}

export const STOP_DEADLINE_MS = 10_000;

export async function startDaemon(config: SockaccelConfig, root: Logger): Promise<Daemon> {
  const log = componentLogger(root, 'daemon');
  const lifecycle = new Lifecycle(log);
  try {
    routeLibbpfMessages(componentLogger(root, 'libbpf'));
    lifecycle.add('libbpf-printer', () => setLibbpfPrinter(null));

    const probes = probeEnvironment();
    log.debug({ probes }, 'feature probes passed');
    if (ensureBpffsMounted()) log.info('mounted bpffs at /sys/fs/bpf');
    preparePinRoot(config.pinRoot);
    const cgroupPath = resolveCgroupPath(config.cgroupPath);

    const mesh = resolveMesh(config);
    const dataPath = loadDataPath({
      pinRoot: config.pinRoot,
      cgroupPath,
      mapSize: config.mapSize,
      includePorts: config.includePorts,
      excludePorts: [...config.excludePorts, ...mesh.excludedPorts],
      mesh: mesh.settings,
      ...(config.objectDir ? { objectDir: config.objectDir } : {}),
      log: componentLogger(root, 'loader'),
    });
    lifecycle.add('data-path', () => dataPath.close());
    // Stop semantics: new connections stay plain; sockets already in the
    // pinned sockhash keep being redirected (unpinning would drop their bytes),
    // and the drained program keeps guarding handshakes that are in flight.
    lifecycle.add('sockops-drain', () => dataPath.drain());

    const endpoints = new LocalEndpoints(dataPath.mapFds.sa_local, config.localCidrs, componentLogger(root, 'local-endpoints'));
    endpoints.start();
    lifecycle.add('local-endpoints', () => endpoints.stop());

    const statusLog = componentLogger(root, 'status');
    const timer = setInterval(() => statusLog.debug(summarize(readStats(dataPath.mapFds.sa_stats))), config.statusIntervalMs);
    lifecycle.add('status-timer', () => clearInterval(timer));

    log.info(
      { cgroup: cgroupPath, pinRoot: config.pinRoot, mesh: config.mesh, programIds: dataPath.programIds, reusedMaps: dataPath.reusedMaps },
      'ready',
    );
    return {
      dataPath,
      cgroupPath,
      stop: async (deadlineMs = STOP_DEADLINE_MS) => {
        log.info('stopping');
        const clean = await lifecycle.stop(deadlineMs);
        log.info({ clean }, 'stopped');
        return clean;
      },
    };
  } catch (err) {
    await lifecycle.stop(STOP_DEADLINE_MS);
    throw err;
  }
}

function routeLibbpfMessages(log: Logger): void {
  setLibbpfPrinter((level, message) => {
    const text = message.trimEnd();
    if (level === 'warn') log.warn(text);
    else if (level === 'info') log.debug(text);
    else log.trace(text);
  });
}
