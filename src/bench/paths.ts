/**
 * The network paths the bench measures. A path says where the server
 * listens and where the client connects from, and builds (and removes) what
 * it needs; the runner does the rest. To add a path, implement BenchPath and
 * add it to PATHS: `--paths` and the report pick it up from there.
 *
 * Only loopback and addresses inside namespaces the bench creates are used;
 * the host's own networking is never touched.
 */
import { randomBytes } from 'node:crypto';
import { createPodNetwork, DEFAULT_POD_SUBNET4 } from '../netns';

export interface PathEndpoint {
  /** Server: the address to listen on; client: the address to connect to. */
  readonly host: string;
  /** Named network namespace, or the bench's own when absent. */
  readonly netns?: string;
}

export interface PreparedPath {
  readonly server: PathEndpoint;
  readonly client: PathEndpoint;
  /** Removes whatever setup created. Idempotent. */
  cleanup(): Promise<void>;
}

export interface BenchPath {
  readonly name: string;
  /** One line for the report. */
  readonly description: string;
  /** Prefixes the daemon must treat as local for this path (loopback and host addresses always are). */
  readonly localCidrs: readonly string[];
  setup(ctx: PathContext): Promise<PreparedPath>;
}

export interface PathContext {
  /** A name for a namespace (or anything else) this path creates: unique, and recognisably the bench's. */
  name(label: string): string;
}

const nothingToClean = async (): Promise<void> => {};

const loopback: BenchPath = {
  name: 'loopback',
  description: 'client and server on 127.0.0.1',
  localCidrs: [],
  setup: async () => ({ server: { host: '127.0.0.1' }, client: { host: '127.0.0.1' }, cleanup: nothingToClean }),
};

const dualStack: BenchPath = {
  name: 'dual-stack',
  description: 'IPv4 client to a server listening on :: (accepted as ::ffff:127.0.0.1)',
  localCidrs: [],
  setup: async () => ({ server: { host: '::' }, client: { host: '127.0.0.1' }, cleanup: nothingToClean }),
};

const podToPod: BenchPath = {
  name: 'pod-to-pod',
  description: `two network namespaces on a bridge (${DEFAULT_POD_SUBNET4}), like two pods on one node`,
  localCidrs: [DEFAULT_POD_SUBNET4],
  async setup(ctx) {
    const network = await createPodNetwork({ pods: 2 }, { name: ctx.name });
    const [server, client] = network.pods;
    return {
      server: { host: '0.0.0.0', netns: server!.ns },
      client: { host: server!.ipv4, netns: client!.ns },
      cleanup: network.cleanup,
    };
  },
};

export const PATHS: readonly BenchPath[] = [loopback, dualStack, podToPod];

export function pathByName(name: string): BenchPath | undefined {
  return PATHS.find((p) => p.name === name);
}

/** Prefix of everything the bench names on the machine (namespaces, cgroup, pins). */
export const BENCH_PREFIX = 'sockaccel-bench-';

/** `sockaccel-bench-<random>`: one per bench run. */
export function benchRunName(): string {
  return `${BENCH_PREFIX}${randomBytes(3).toString('hex')}`;
}
