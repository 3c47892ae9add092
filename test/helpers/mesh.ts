/**
 * An Istio-style mesh on one machine: pod namespaces on a bridge, each set up
 * by src/mesh-fixture (istio-init's nat rules, a sidecar stand-in as the
 * proxy UID), with the sidecars' events at hand for assertions.
 */
import { applyIstioInit, ISTIO, isSidecarListening, sidecarArgv } from '../../src/fixtures/mesh-fixture';
import { runThenCleanUp } from './cleanup';
import { withPodNetwork, type NetnsEndpoint, type PodNetwork } from './netns';
import { JsonLineProcess } from './process';
import type { ExecutionContext } from 'ava';
import type { ClientReport, ServerConnReport } from './peer-protocol';

export { ISTIO };

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

/** A sidecar stand-in in the pod's namespace (and `cgroup`), once its capture ports listen. */
export async function startSidecar(pod: NetnsEndpoint, cgroup: string | undefined): Promise<JsonLineProcess> {
  const sidecar = new JsonLineProcess(`sidecar in ${pod.ns}`, sidecarArgv(), { netns: pod.ns, cgroup });
  await sidecar.waitUntil((events) => (events as unknown as SidecarEvent[]).find(isSidecarListening), 10_000, 'the sidecar to listen');
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
          await applyIstioInit(pod.ns);
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

/**
 * Through the chain the server sees 127.0.0.6 as its peer, so connections
 * are matched by content: every connection carries its own seeded payload.
 */
export function assertChainIntegrity(t: ExecutionContext, client: ClientReport, server: ServerConnReport[], bytes: number): void {
  t.is(server.length, client.conns.length, 'one server connection per client connection');
  for (const c of client.conns) {
    const s = server.find((x) => x.sha256In === c.sha256Out);
    if (!s) {
      t.fail(`no server connection received ${c.local}'s bytes`);
      continue;
    }
    t.is(c.bytesOut, bytes);
    t.is(s.bytesIn, bytes);
    t.is(s.sha256Out, c.sha256In, `${c.local}: echo came back intact`);
    t.is(c.bytesIn, bytes);
  }
}
