/**
 * The network paths the bench measures. A path says where the server
 * listens and where the client connects from, for each side (plain and
 * accelerated), and builds (and removes) what it needs; the runner does the
 * rest. To add a path, implement BenchPath and add it to PATHS: `--paths`
 * and the report pick it up from there.
 *
 * Only loopback and addresses inside namespaces the bench creates are used;
 * the host's own networking is never touched.
 */
import { execFile } from 'node:child_process';
import { cleanUpOnFailure } from '../common/cleanup';
import type { MeshName } from '../daemon/mesh';
import { applyIstioInit, isSidecarListening, sidecarArgv } from '../fixtures/mesh-fixture';
import { createPodNetwork, DEFAULT_POD_SUBNET4 } from '../fixtures/netns';
import type { Mode } from './loadgen';
import type { JsonProcess, Placement, ProcessGroup } from './processes';

export interface PathEndpoint {
  /** Server: the address to listen on; client: the address to connect to. */
  readonly host: string;
  /** Named network namespace, or the bench's own when absent. */
  readonly netns?: string;
}

/** The two TCP sides every path is measured on. */
export type TcpSide = 'plain' | 'accelerated';

export interface SideEndpoints {
  readonly server: PathEndpoint;
  readonly client: PathEndpoint;
}

/** CPUs (taskset lists) a run's server and client are pinned to. */
export interface RunCpus {
  readonly server: string;
  readonly client: string;
}

export interface PreparedPath {
  /**
   * Per side: a path whose own processes carry the traffic (proxies) must
   * run them where that side's applications run, so it builds one set per side.
   */
  readonly endpoints: Readonly<Record<TcpSide, SideEndpoints>>;
  /** Before each run on `side`: the path's own processes follow the run's CPUs. */
  beforeRun?(side: TcpSide, cpus: RunCpus): Promise<void>;
  /** Removes whatever setup created. Idempotent. */
  cleanup(): Promise<void>;
}

export interface BenchPath {
  readonly name: string;
  /** One line for the report. */
  readonly description: string;
  /** Prefixes the daemon must treat as local for this path (loopback and host addresses always are). */
  readonly localCidrs: readonly string[];
  /**
   * TCP connections the bytes cross from client to server: 1 when they talk
   * directly, one more per proxy in between. Each is a pair of sockets the
   * accelerated side must redirect, so the counters gate expects that many.
   */
  readonly hops: number;
  /** The daemon's mesh preset the path needs, when its proxies' connections are redirected by a mesh's rules. */
  readonly mesh?: Exclude<MeshName, 'none'>;
  /** What the path can measure, when not every kind. */
  readonly kinds?: readonly Mode[];
  setup(ctx: PathContext): Promise<PreparedPath>;
}

export interface PathContext {
  /** A name for a namespace (or anything else) this path creates: unique, and recognisably the bench's. */
  name(label: string): string;
  /** Where `side`'s processes run: the scratch cgroup for the accelerated side, the bench's own for the plain one. */
  placement(side: TcpSide): Pick<Placement, 'cgroup'>;
  /** Spawns the path's own long-running processes, so that SIGINT and cleanup can end them by pid. */
  readonly group: ProcessGroup;
}

/** Both sides on the same endpoints: applications alone decide the side, by their cgroup. */
function bothSides(endpoints: SideEndpoints): Record<TcpSide, SideEndpoints> {
  return { plain: endpoints, accelerated: endpoints };
}

const nothingToClean = async (): Promise<void> => {};

const loopback: BenchPath = {
  name: 'loopback',
  description: 'client and server on 127.0.0.1',
  localCidrs: [],
  hops: 1,
  setup: async () => ({ endpoints: bothSides({ server: { host: '127.0.0.1' }, client: { host: '127.0.0.1' } }), cleanup: nothingToClean }),
};

const dualStack: BenchPath = {
  name: 'dual-stack',
  description: 'IPv4 client to a server listening on :: (accepted as ::ffff:127.0.0.1)',
  localCidrs: [],
  hops: 1,
  setup: async () => ({ endpoints: bothSides({ server: { host: '::' }, client: { host: '127.0.0.1' } }), cleanup: nothingToClean }),
};

const podToPod: BenchPath = {
  name: 'pod-to-pod',
  description: `two network namespaces on a bridge (${DEFAULT_POD_SUBNET4}), like two pods on one node`,
  localCidrs: [DEFAULT_POD_SUBNET4],
  hops: 1,
  async setup(ctx) {
    const network = await createPodNetwork({ pods: 2 }, { name: ctx.name });
    const [server, client] = network.pods;
    return {
      endpoints: bothSides({ server: { host: '0.0.0.0', netns: server!.ns }, client: { host: server!.ipv4, netns: client!.ns } }),
      cleanup: network.cleanup,
    };
  },
};

const SIDECAR_START_TIMEOUT_MS = 10_000;

function taskset(cpus: string, pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // -a: every thread, the relay threads of open connections included;
    // threads created later inherit the main thread's mask.
    execFile('taskset', ['-a', '-p', '-c', cpus, String(pid)], (err, _stdout, stderr) => {
      if (err) reject(new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

interface MeshPair {
  readonly endpoints: SideEndpoints;
  /** The client pod's sidecar, then the server pod's. */
  readonly sidecars: readonly [JsonProcess, JsonProcess];
  cleanup(): Promise<void>;
}

/**
 * Two mesh pods for one side: their own pod network (the sides' sidecars
 * must not be shared: a listener's cgroup decides its accepted sockets'),
 * istio-init's rules and a sidecar each, placed like that side's applications.
 */
async function meshPair(ctx: PathContext, side: TcpSide): Promise<MeshPair> {
  const network = await createPodNetwork({ pods: 2 }, { name: (label) => ctx.name(`chain-${side}-${label}`) });
  const sidecars: JsonProcess[] = [];
  const cleanup = async (): Promise<void> => {
    await Promise.all(sidecars.map((s) => s.kill()));
    await network.cleanup();
  };
  return cleanUpOnFailure(async () => {
    const [server, client] = network.pods;
    for (const pod of [client!, server!]) {
      await applyIstioInit(pod.ns);
      const sidecar = ctx.group.spawn(`sidecar in ${pod.ns}`, sidecarArgv(), { ...ctx.placement(side), netns: pod.ns });
      sidecars.push(sidecar);
      await sidecar.waitFor(isSidecarListening, SIDECAR_START_TIMEOUT_MS, 'the sidecar to listen');
    }
    return {
      endpoints: { server: { host: '0.0.0.0', netns: server!.ns }, client: { host: server!.ipv4, netns: client!.ns } },
      sidecars: [sidecars[0]!, sidecars[1]!],
      cleanup,
    };
  }, cleanup);
}

const sidecarChain: BenchPath = {
  name: 'sidecar-chain',
  description: `app -> sidecar -> sidecar -> app: two Istio-style pods on a bridge (${DEFAULT_POD_SUBNET4}), istio-init's nat rules, a native sidecar stand-in as UID 1337 in each; one pair of pods per side`,
  localCidrs: [DEFAULT_POD_SUBNET4],
  hops: 3,
  mesh: 'istio',
  // connrate is left out: a sidecar opens its upstream connection after the
  // client's connect returns, so a run's connection count cannot be gated.
  kinds: ['rr', 'stream'],
  async setup(ctx) {
    const plain = await meshPair(ctx, 'plain');
    const accelerated = await cleanUpOnFailure(() => meshPair(ctx, 'accelerated'), plain.cleanup);
    const pairs = { plain, accelerated };
    return {
      endpoints: { plain: plain.endpoints, accelerated: accelerated.endpoints },
      // Each sidecar on its application's CPU, as in a pod.
      async beforeRun(side, cpus) {
        const [clientSidecar, serverSidecar] = pairs[side].sidecars;
        await taskset(cpus.client, clientSidecar.pid);
        await taskset(cpus.server, serverSidecar.pid);
      },
      // Both attempted whatever one does; each is idempotent.
      async cleanup() {
        const outcomes = await Promise.allSettled([plain.cleanup(), accelerated.cleanup()]);
        const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason as unknown);
        if (failures.length > 0) throw new AggregateError(failures, `sidecar-chain cleanup incomplete: ${failures.map(String).join('; ')}`);
      },
    };
  },
};

export const PATHS: readonly BenchPath[] = [loopback, dualStack, podToPod, sidecarChain];

export function pathByName(name: string): BenchPath | undefined {
  return PATHS.find((p) => p.name === name);
}

