/**
 * `sockaccel run`: take the pin root's instance lock, probe, load, pin,
 * attach, keep the local-endpoints map current, report (to the log and, under
 * systemd, as READY=1 / STATUS= / WATCHDOG=1); and undo it all in reverse on
 * stop.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import { parsePortOverrides, SockaccelConfig } from '../config/config';
import { componentLogger } from '../common/log';
import { probeEnvironment } from '../kernel/probes';
import { ensureBpffsMounted, preparePinRoot } from '../kernel/bpffs';
import { resolveCgroupPath } from '../kernel/cgroup';
import { DataPath, loadDataPath } from './loader';
import { endpointsStatePath, LocalEndpoints } from './local-endpoints';
import { resolveMesh, writeMeshPresets } from './mesh';
import { checkFionread } from './fionread-gate';
import { DEFAULT_OBJECT_DIR } from '../kernel/bpf-object';
import { Lifecycle } from './lifecycle';
import { mapInfo, setLibbpfPrinter } from '../kernel/libbpf';
import { readStats, summarize } from '../kernel/stats';
import { acquireInstanceLock } from './instance-lock';
import { createNotifier } from './sd-notify';
import { bindDaemonMetrics, serveDaemonMetrics } from '../metrics';
import { InsertFailureWarning } from '../metrics/insert-failures';
import { seedListeners } from './seed-listeners';
import { startAdaptive } from '../adaptive';

export interface Daemon {
  readonly dataPath: DataPath;
  readonly cgroupPath: string;
  /** The adaptive policy's run-time switch (bench compares "accelerate everything" with "adaptive"). */
  readonly adaptive: { setEnabled(on: boolean): void };
  /** Stops accelerating new connections and releases everything we hold. */
  stop(deadlineMs?: number): Promise<boolean>;
}

export const STOP_DEADLINE_MS = 10_000;

export async function startDaemon(config: SockaccelConfig, root: Logger): Promise<Daemon> {
  const log = componentLogger(root, 'daemon');
  const lifecycle = new Lifecycle(log);
  const notifier = createNotifier(componentLogger(root, 'systemd'));
  try {
    // Before anything is probed or loaded: a second daemon on this pin root
    // must fail without touching the running one's data path.
    const lock = acquireInstanceLock(config.pinRoot, 'run');
    lifecycle.add('instance-lock', () => lock.release());
    // From the start, so that a hang anywhere (startup included) is caught.
    lifecycle.add('watchdog', notifier.startWatchdog());
    installTestHooks(lifecycle, log);

    routeLibbpfMessages(componentLogger(root, 'libbpf'));
    lifecycle.add('libbpf-printer', () => setLibbpfPrinter(null));

    const probes = probeEnvironment();
    log.info({ features: probes.map((p) => p.name) }, 'feature probes passed');
    // Still the probe stage: refuses (exit 71) before anything is attached.
    await checkFionread(config.objectDir || DEFAULT_OBJECT_DIR, config.fionreadHazard, os.release(), log);
    if (ensureBpffsMounted()) log.info('mounted bpffs at /sys/fs/bpf');
    preparePinRoot(config.pinRoot);
    const cgroupPath = resolveCgroupPath(config.cgroupPath);
    // Taken before loading: a busy address must fail the start with nothing attached.
    const metrics = config.metricsEnabled ? await bindDaemonMetrics(config) : null;
    if (metrics) lifecycle.add('metrics', () => metrics.close());

    const mesh = resolveMesh(config);
    // "PORT=plain" overrides are exclusions; "PORT=accelerate" skip the decision.
    const overrides = parsePortOverrides(config.adaptiveOverrides);
    const dataPath = loadDataPath({
      pinRoot: config.pinRoot,
      cgroupPath,
      mapSize: config.mapSize,
      includePorts: config.includePorts,
      excludePorts: [...new Set([...config.excludePorts, ...mesh.excludedPorts, ...overrides.plain])],
      forcePorts: overrides.accelerate,
      maxServices: config.adaptiveMaxServices,
      ...(config.objectDir ? { objectDir: config.objectDir } : {}),
      log: componentLogger(root, 'loader'),
    });
    lifecycle.add('data-path', () => dataPath.close());
    // Stop semantics: new connections stay plain; sockets already in the
    // pinned sockhashes keep being redirected (the pins stay, so the next
    // start reuses the maps rather than making new ones beside them), and the
    // drained program keeps guarding handshakes that are in flight.
    lifecycle.add('sockops-drain', () => dataPath.drain());
    log.info({ programIds: dataPath.programIds, reusedMaps: dataPath.reusedMaps }, 'data path attached');
    // Before the seeding, which detects the sidecars that listen already.
    writeMeshPresets(dataPath.mapFds.sa_mesh_presets, mesh.slots);
    log.info({ mesh: config.mesh, presets: mesh.slots.map((s) => `${s.name} (${s.scope})`) }, 'mesh presets set');
    // After the attach: a listen() from here on is seen by TCP_LISTEN_CB.
    try {
      const seeded = seedListeners(config.pinRoot, cgroupPath, config.objectDir || undefined);
      log.info(seeded, 'registered listeners that existed before the start');
    } catch (err) {
      log.warn({ err }, 'cannot register the listeners that existed before the start (needs iter/task_file and bpf_sock_from_file, Linux 5.11+, and CAP_PERFMON); servers started earlier are accelerated only after they restart');
    }

    const endpoints = new LocalEndpoints(dataPath.mapFds.sa_local, config.localCidrs, componentLogger(root, 'local-endpoints'), {
      statePath: endpointsStatePath(config.pinRoot),
    });
    lifecycle.add('local-endpoints', () => endpoints.stop());
    await endpoints.start();

    // Writes the switch from config (the pinned one may hold an earlier run's
    // or bench's value) and learns; stopped before the data path closes its fds.
    const adaptive = startAdaptive(
      { services: dataPath.mapFds.sa_services, decisions: dataPath.mapFds.sa_decisions, policy: dataPath.mapFds.sa_policy },
      config,
      overrides,
      componentLogger(root, 'adaptive'),
    );
    lifecycle.add('adaptive', () => adaptive.stop());

    const statusLog = componentLogger(root, 'status');
    const insertFailures = new InsertFailureWarning(statusLog, mapInfo(dataPath.mapFds.sa_clients).maxEntries);
    const refreshStatus = (): string => {
      const stats = readStats(dataPath.mapFds.sa_stats);
      insertFailures.observe(stats);
      const line = summarize(stats);
      statusLog.debug(line);
      notifier.status(line);
      return line;
    };
    const timer = setInterval(refreshStatus, config.statusIntervalMs);
    lifecycle.add('status-timer', () => clearInterval(timer));

    if (metrics) {
      serveDaemonMetrics(metrics, dataPath, componentLogger(root, 'metrics'), () => adaptive.snapshot());
      // Closed again here, before the data path whose map fds it reads.
      lifecycle.add('metrics-serving', () => metrics.close());
    }

    log.info(
      { cgroup: cgroupPath, pinRoot: config.pinRoot, mesh: config.mesh, programIds: dataPath.programIds, reusedMaps: dataPath.reusedMaps },
      'ready',
    );
    notifier.ready(summarize(readStats(dataPath.mapFds.sa_stats)));
    return {
      dataPath,
      cgroupPath,
      adaptive,
      stop: async (deadlineMs = STOP_DEADLINE_MS) => {
        log.info('stopping');
        notifier.stopping('stopping: new connections stay plain TCP, accelerated ones keep their redirect');
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

/**
 * Test-only, and only with SOCKACCEL_TEST_HOOKS=1 in the environment: SIGUSR2
 * blocks the event loop (a busy wait, bounded so that a missing watchdog
 * cannot spin forever), as a hung daemon would, so a test can watch systemd's
 * watchdog kill and restart it.
 */
const TEST_HOOK_BLOCK_MS = 120_000;

function installTestHooks(lifecycle: Lifecycle, log: Logger): void {
  if (process.env.SOCKACCEL_TEST_HOOKS !== '1') return;
  const blockLoop = () => {
    log.warn({ ms: TEST_HOOK_BLOCK_MS }, 'test hook: blocking the event loop');
    const until = Date.now() + TEST_HOOK_BLOCK_MS;
    while (Date.now() < until) {
      // spin: no timer, no I/O, no watchdog ping
    }
  };
  process.on('SIGUSR2', blockLoop);
  lifecycle.add('test-hooks', () => void process.off('SIGUSR2', blockLoop));
}
