/**
 * The accelerated side of the bench: a scratch cgroup under the cgroup v2
 * root, its own pin root, and the data path started in this process on that
 * cgroup only. The host's own daemon (if any) is never used or touched: the
 * scratch daemon has its own pins and lock, and only processes the bench
 * places in the scratch cgroup are accelerated.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { DEFAULT_BPFFS } from '../kernel/bpffs';
import { findCgroup2Root } from '../kernel/cgroup';
import { loadConfig, type SockaccelConfig } from '../config/config';
import { startDaemon, type Daemon } from '../daemon/daemon';
import { effectiveSockops } from '../doctor/neighbours';
import { attemptEach } from '../common/cleanup';
import { EnvironmentError } from '../common/errors';
import type { MeshName } from '../daemon/mesh';
import { readStats } from '../kernel/stats';
import { readDecisions, type Decision, type ServiceKey } from '../kernel/services';
import type { Stats } from '../kernel/bpf-layout';

const RMDIR_RETRY_MS = 5_000;

export interface AcceleratedSide {
  readonly cgroup: string;
  readonly pinRoot: string;
  /** The daemon's mesh preset. */
  readonly mesh: MeshName;
  /** The daemon's counters, summed over CPUs. */
  counters(): Stats;
  /**
   * The adaptive policy's run-time switch (sa_policy): off, every connection
   * that pairs is redirected ("accelerated" runs); on, the learner's
   * decisions apply ("adaptive" runs). Off from the start.
   */
  setAdaptive(on: boolean): void;
  /** The learner's decisions, by service id. */
  decisions(): Map<string, { key: ServiceKey; decision: Decision }>;
  /** Stops the daemon (which releases its instance lock), removes its pins, removes the cgroup. Idempotent. */
  close(): Promise<void>;
}

/**
 * The bench's daemon configuration: the defaults plus the configuration
 * flags given on the bench's own command line (e.g. --object-dir to measure
 * another build, --include-ports), never the host's config file or
 * SOCKACCEL_* environment, which describe the host daemon. Where it attaches
 * and pins, what counts as local and metrics (off: the host daemon may hold
 * the port) are the bench's.
 */
export function benchDaemonConfig(configArgv: readonly string[], overrides: { cgroupPath: string; pinRoot: string; localCidrs: readonly string[]; mesh: MeshName }): SockaccelConfig {
  const namesFile = configArgv.some((arg) => arg.startsWith('--config='));
  const base = loadConfig({ argv: [...(namesFile ? [] : ['--config=/dev/null']), ...configArgv], env: {} });
  return Object.freeze({
    ...base,
    cgroupPath: overrides.cgroupPath,
    pinRoot: overrides.pinRoot,
    localCidrs: Object.freeze([...new Set([...base.localCidrs, ...overrides.localCidrs])]),
    // A path's mesh (its proxies' redirects) wins; otherwise the flags' choice stands.
    mesh: overrides.mesh === 'none' ? base.mesh : overrides.mesh,
    metricsEnabled: false,
  });
}

/**
 * Another sock_ops program in effect where the bench runs would accelerate
 * (or otherwise change) the "plain" side and fight over the accelerated
 * one's sockets: the comparison would be meaningless.
 */
export function refuseForeignSockops(cgroups: readonly string[]): void {
  const foreign = cgroups.flatMap((cg) => effectiveSockops(cg).map((p) => `${p.name} (id ${p.id}) attached at ${p.cgroup}`));
  if (foreign.length > 0) {
    throw new EnvironmentError(`sock_ops programs already run for the bench's sockets: ${[...new Set(foreign)].join('; ')}`, {
      hint: 'plain TCP would not be plain. Stop the daemon (or CNI feature) that attached them to a parent cgroup, or run the bench on another machine',
    });
  }
}

/** Where the run `runId` keeps its accelerated side: named after the run, so that its leftovers can be found. */
export function scratchLocations(runId: string): { cgroup: string; pinRoot: string } {
  return { cgroup: path.join(findCgroup2Root(), runId), pinRoot: path.join(DEFAULT_BPFFS, runId) };
}

/** Creates the scratch cgroup and starts the data path on it. */
export async function startAcceleratedSide(opts: {
  name: string;
  configArgv: readonly string[];
  localCidrs: readonly string[];
  mesh: MeshName;
  log: Logger;
}): Promise<AcceleratedSide> {
  const { cgroup, pinRoot } = scratchLocations(opts.name);
  const config = benchDaemonConfig(opts.configArgv, { cgroupPath: cgroup, pinRoot, localCidrs: opts.localCidrs, mesh: opts.mesh });
  fs.mkdirSync(cgroup);
  let daemon: Daemon | undefined;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await attemptEach('bench cleanup incomplete', [
      () => daemon?.stop(),
      () => fs.rmSync(pinRoot, { recursive: true, force: true }),
      () => removeCgroup(cgroup),
    ]);
  };
  try {
    refuseForeignSockops([cgroup, cgroupOfSelf()]);
    daemon = await startDaemon(config, opts.log);
  } catch (err) {
    await close().catch(() => {
      // the start failure is the news; close() already tried every step
    });
    throw err;
  }
  const { sa_stats: statsFd, sa_decisions: decisionsFd } = daemon.dataPath.mapFds;
  // The daemon's own switch (it writes sa_policy and keeps its state in step); its learner runs either way.
  const running = daemon;
  const setAdaptive = (on: boolean) => running.adaptive.setEnabled(on);
  try {
    // The integrity gate and the accelerated runs need every connection redirected.
    setAdaptive(false);
  } catch (err) {
    await close();
    throw err;
  }
  return { cgroup, pinRoot, mesh: config.mesh, counters: () => readStats(statsFd), setAdaptive, decisions: () => readDecisions(decisionsFd), close };
}

/** This process's cgroup v2 directory: where the plain side's processes run. */
export function cgroupOfSelf(): string {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (line === undefined) throw new EnvironmentError('this process has no cgroup v2 membership');
  // path.resolve drops the trailing slash of the root cgroup ("0::/").
  return path.resolve(findCgroup2Root(), `.${line.slice(3)}`);
}

/**
 * rmdir answers EBUSY until exited members are released; the caller has
 * already ended every process it put there, so retry briefly.
 */
export async function removeCgroup(dir: string): Promise<void> {
  const deadline = Date.now() + RMDIR_RETRY_MS;
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) {
        const procs = fs.existsSync(dir) ? fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n').join(' ') : '';
        throw new Error(`cannot remove the bench cgroup ${dir} (${code}); processes still in it: ${procs || 'none'}`);
      }
    }
    await sleep(50);
  }
}
