/**
 * Runs the real daemon (dist/src/cli/main.js run) for a test: attached to a
 * scratch cgroup, with its own pin root, so it never touches the host's
 * running sockaccel. Cleanup stops it and removes every pin it made.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './cli';
import { JsonLineProcess, type ExitStatus } from './process';
import { uniqueName } from './names';
import { readStatus, type StatusReport } from '../../src/cli/status';
import { lockPath } from '../../src/daemon/instance-lock';

export const TEST_PIN_PREFIX = '/sys/fs/bpf/sockaccel-test-';

export interface DaemonOptions {
  cgroup: string;
  pinRoot?: string;
  localCidrs?: string[];
  mapSize?: number;
  includePorts?: number[];
  excludePorts?: number[];
  logLevel?: string;
  mesh?: string;
  meshExcludedPorts?: number[];
  /**
   * Default "accept": the data-path tests also run on kernels whose FIONREAD
   * misses redirected bytes (6.1, in a VM), where the default "refuse" would
   * stop the daemon at start. The policy itself is tested in fionread.test.ts.
   */
  fionreadHazard?: 'refuse' | 'accept';
  /**
   * Default false: the data-path, mesh and security tests count on every
   * connection that pairs being accelerated, and some make hundreds of short
   * connections to one service, which the adaptive policy would (rightly)
   * leave plain halfway. The policy itself is tested in adaptive.test.ts.
   */
  adaptive?: boolean;
  /** Any other `--flag=value` for `sockaccel run`. */
  extraArgs?: string[];
  /** Runs the daemon through this command, e.g. setpriv with fewer capabilities. */
  wrapper?: string[];
}

export interface RunningDaemon {
  readonly pinRoot: string;
  readonly process: JsonLineProcess;
  status(): StatusReport;
  /** A counter from the daemon's per-CPU stats map, summed. */
  counter(name: string): bigint;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<ExitStatus>;
}

export function daemonArgs(opts: DaemonOptions, pinRoot: string): string[] {
  const args = ['run', `--cgroup-path=${opts.cgroup}`, `--pin-root=${pinRoot}`, `--log-level=${opts.logLevel ?? 'info'}`, `--fionread-hazard=${opts.fionreadHazard ?? 'accept'}`, `--adaptive=${opts.adaptive ?? false}`];
  if (opts.localCidrs?.length) args.push(`--local-cidrs=${opts.localCidrs.join(',')}`);
  if (opts.mapSize !== undefined) args.push(`--map-size=${opts.mapSize}`);
  if (opts.includePorts?.length) args.push(`--include-ports=${opts.includePorts.join(',')}`);
  if (opts.excludePorts?.length) args.push(`--exclude-ports=${opts.excludePorts.join(',')}`);
  if (opts.mesh) args.push(`--mesh=${opts.mesh}`);
  if (opts.meshExcludedPorts?.length) args.push(`--mesh-excluded-ports=${opts.meshExcludedPorts.join(',')}`);
  return [...args, ...(opts.extraArgs ?? [])];
}

type LogLine = { msg?: string };

export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const pinRoot = opts.pinRoot ?? TEST_PIN_PREFIX + uniqueName('pins');
  const proc = new JsonLineProcess('sockaccel daemon', [...(opts.wrapper ?? []), process.execPath, CLI, ...daemonArgs(opts, pinRoot)], {});
  try {
    await proc.waitUntil((events) => (events as LogLine[]).find((e) => e.msg === 'ready'), 20_000, 'the daemon to be ready');
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return {
    pinRoot,
    process: proc,
    status: () => readStatus(pinRoot),
    counter: (name) => BigInt(readStatus(pinRoot).counters[name] ?? 'NaN'),
    async stop() {
      proc.signal('SIGTERM');
      return proc.exitWithin(15_000);
    },
  };
}

/** Unpins everything under a test pin root; the kernel frees what nothing else holds. */
export function removePinRoot(pinRoot: string): void {
  if (!pinRoot.startsWith(TEST_PIN_PREFIX)) throw new Error(`refusing to remove ${pinRoot}: not a test pin root`);
  fs.rmSync(pinRoot, { recursive: true, force: true });
  // A daemon that was SIGKILLed leaves its (no longer locked) instance-lock file.
  fs.rmSync(lockPath(pinRoot), { force: true });
}

export function listTestPinRoots(): string[] {
  const dir = path.dirname(TEST_PIN_PREFIX);
  const prefix = path.basename(TEST_PIN_PREFIX);
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith(prefix)).map((n) => path.join(dir, n)) : [];
}

/** Runs `fn` with a daemon; stops it and removes its pins even if `fn` throws. */
export async function withDaemon<T>(opts: DaemonOptions, fn: (daemon: RunningDaemon) => Promise<T>): Promise<T> {
  const daemon = await startDaemon(opts);
  try {
    return await fn(daemon);
  } finally {
    await daemon.stop().catch(() => daemon.process.kill());
    removePinRoot(daemon.pinRoot);
  }
}
