/**
 * An Istio-style mesh on one machine: pod namespaces on a bridge, each with
 * istio-init's nat rules and a sidecar stand-in (build/native/sidecar, from
 * scripts/bench/sidecar.c) running as the proxy UID.
 *
 *   app A -> (REDIRECT :15001) sidecar A -> podB:port -> (REDIRECT :15006)
 *   sidecar B -> from 127.0.0.6 -> app B
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runThenCleanUp } from './cleanup';
import { withPodNetwork, type NetnsEndpoint, type PodNetwork } from './netns';
import { JsonLineProcess, runCommand } from './process';

export const ISTIO = { proxyUid: 1337, outbound: 15001, inbound: 15006, inboundSource: '127.0.0.6' } as const;

const SIDECAR = ((): string => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'build', 'native', 'sidecar');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`build/native/sidecar not found above ${__dirname}: run scripts/setup.sh`);
})();

/**
 * istio-init's nat table, reduced to what routes TCP: outbound traffic of
 * everyone but the proxy (and but loopback) to 15001, all inbound to 15006,
 * the proxy's 127.0.0.6 passthrough left alone.
 */
const ISTIO_RULES: readonly string[][] = [
  ['-N', 'ISTIO_INBOUND'],
  ['-N', 'ISTIO_IN_REDIRECT'],
  ['-N', 'ISTIO_OUTPUT'],
  ['-N', 'ISTIO_REDIRECT'],
  ['-A', 'PREROUTING', '-p', 'tcp', '-j', 'ISTIO_INBOUND'],
  ['-A', 'OUTPUT', '-p', 'tcp', '-j', 'ISTIO_OUTPUT'],
  ['-A', 'ISTIO_INBOUND', '-p', 'tcp', '-j', 'ISTIO_IN_REDIRECT'],
  ['-A', 'ISTIO_IN_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(ISTIO.inbound)],
  ['-A', 'ISTIO_OUTPUT', '-s', '127.0.0.6/32', '-o', 'lo', '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-m', 'owner', '--uid-owner', String(ISTIO.proxyUid), '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-d', '127.0.0.1/32', '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-j', 'ISTIO_REDIRECT'],
  ['-A', 'ISTIO_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(ISTIO.outbound)],
];

export interface SidecarAccept {
  port: number;
  peer: string;
  origDst: string;
}

export interface MeshPod extends NetnsEndpoint {
  sidecar: JsonLineProcess;
}

export interface Mesh {
  net: PodNetwork;
  pods: MeshPod[];
}

type SidecarEvent = { event: string; port?: number; peer?: string; origDst?: string };

/** Connections a sidecar accepted so far, with the original destination it read. */
export function sidecarAccepts(pod: MeshPod): SidecarAccept[] {
  return (pod.sidecar.events as unknown as SidecarEvent[])
    .filter((e) => e.event === 'accept')
    .map((e) => ({ port: e.port!, peer: e.peer!, origDst: e.origDst! }));
}

/** Sidecar events that mean a connection could not be proxied. */
export function sidecarErrors(pod: MeshPod): SidecarEvent[] {
  const normal = ['listening', 'accept', 'upstream', 'close'];
  return (pod.sidecar.events as unknown as SidecarEvent[]).filter((e) => !normal.includes(e.event));
}

async function startSidecar(pod: NetnsEndpoint, cgroup: string | undefined): Promise<JsonLineProcess> {
  const sidecar = new JsonLineProcess(`sidecar in ${pod.ns}`, [SIDECAR], { netns: pod.ns, cgroup, uid: ISTIO.proxyUid });
  await sidecar.waitUntil((events) => (events as unknown as SidecarEvent[]).find((e) => e.event === 'listening'), 10_000, 'the sidecar to listen');
  return sidecar;
}

/**
 * Builds `pods` mesh pods (sidecars in `cgroup` if given, like the apps the
 * test starts there), runs `fn`, and tears everything down.
 */
export async function withMesh<T>(opts: { pods: number; cgroup?: string }, fn: (mesh: Mesh) => Promise<T>): Promise<T> {
  return withPodNetwork({ pods: opts.pods }, async (net) => {
    const pods: MeshPod[] = [];
    return runThenCleanUp(
      async () => {
        for (const pod of net.pods) {
          for (const rule of ISTIO_RULES) await runCommand('ip', ['netns', 'exec', pod.ns, 'iptables', '-t', 'nat', ...rule]);
          pods.push({ ...pod, sidecar: await startSidecar(pod, opts.cgroup) });
        }
        return fn({ net, pods });
      },
      async () => {
        await Promise.all(pods.map((p) => p.sidecar.kill()));
      },
    );
  });
}
