import { existsSync, readdirSync } from 'node:fs';
import {
  createNetns as createNamedNetns,
  createPodNetwork as createPodNetworkIn,
  deleteAllNetns,
  type PodNetwork,
  type PodNetworkOptions,
} from '../../src/fixtures/netns';
import { runThenCleanUp } from './cleanup';
import { uniqueName } from './names';
import { runClient, startServer } from './traffic';

export { deleteNetns, type NetnsEndpoint, type PodNetwork, type PodNetworkOptions } from '../../src/fixtures/netns';

export const NETNS_PREFIX = 'sa-';

/** Names of all test namespaces on the machine (`sa-*`), whoever created them. */
export function listTestNetns(): string[] {
  if (!existsSync('/run/netns')) return [];
  return readdirSync('/run/netns').filter((name) => name.startsWith(NETNS_PREFIX));
}

/** `sa-<tag>-<random>-<label>`: attributable to this test run. */
const testNetnsName = (label: string): string => `${uniqueName(NETNS_PREFIX)}-${label}`;

/** Creates `sa-<tag>-<random>-<label>` with loopback up. */
export function createNetns(label: string): Promise<string> {
  return createNamedNetns(testNetnsName(label));
}

/** Runs `fn` with one fresh namespace per label, deleting them all afterwards. */
export async function withNetns<T>(labels: string[], fn: (names: string[]) => Promise<T>): Promise<T> {
  const created: string[] = [];
  return runThenCleanUp(async () => {
    for (const label of labels) created.push(await createNetns(label));
    return fn([...created]);
  }, () => deleteAllNetns(created));
}

/**
 * The pod network of src/fixtures/netns.ts with test names, every link then checked
 * with a real TCP connection, over IPv4 and IPv6.
 */
export function createPodNetwork(opts: PodNetworkOptions): Promise<PodNetwork> {
  return createPodNetworkIn(opts, { name: testNetnsName, verify: verifyLinks });
}

/**
 * A short TCP exchange from every pod and the remote to the node's address on
 * its link, over IPv4 and IPv6. One dual-stack server in the node namespace
 * answers them all.
 */
async function verifyLinks(network: PodNetwork): Promise<void> {
  const probes = [
    ...network.pods.map((pod) => ({ from: pod.ns, to: [network.node.ipv4, network.node.ipv6] })),
    { from: network.remote.ns, to: [network.nodeOnRemoteLink.ipv4, network.nodeOnRemoteLink.ipv6] },
  ].flatMap(({ from, to }) => to.map((host) => ({ from, host })));
  const server = await startServer({ netns: network.node.ns, host: '::', mode: 'sink' });
  await runThenCleanUp(
    () =>
      Promise.all(
        probes.map(({ from, host }) =>
          runClient({ netns: from, host, port: server.port, bytes: 64, timeoutMs: 15_000 }).catch((err: Error) => {
            throw new Error(`pod network: no TCP connectivity from ${from} to ${host}: ${err.message}`);
          }),
        ),
      ),
    server.stop,
  );
}

/** Runs `fn` with a fresh pod network and deletes it afterwards, whatever happens. */
export async function withPodNetwork<T>(opts: PodNetworkOptions, fn: (network: PodNetwork) => Promise<T>): Promise<T> {
  const network = await createPodNetwork(opts);
  return runThenCleanUp(() => fn(network), network.cleanup);
}
