/**
 * Network namespaces and a pod-like network built entirely inside them: the
 * bench's pod-to-pod path and the integration tests share it. Nothing here
 * touches the host's own interfaces, addresses or sysctls; every link lives
 * in a namespace created here, and deleting the namespaces removes it all.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cleanUpOnFailure } from './cleanup';

const COMMAND_TIMEOUT_MS = 30_000;

/** Runs `ip` to completion; the error carries its stderr. */
function ip(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Creates the namespace `name` with loopback up. */
export async function createNetns(name: string): Promise<string> {
  await ip('netns', 'add', name);
  try {
    await ip('-n', name, 'link', 'set', 'lo', 'up');
  } catch (err) {
    await deleteNetns(name);
    throw err;
  }
  return name;
}

/** Deletes a namespace; its veths and bridges go with it. Idempotent. */
export async function deleteNetns(name: string): Promise<void> {
  if (existsSync(`/run/netns/${name}`)) await ip('netns', 'del', name);
}

/** Deletes every namespace, attempting all of them even if some fail. */
export async function deleteAllNetns(names: readonly string[]): Promise<void> {
  const outcomes = await Promise.allSettled(names.map(deleteNetns));
  const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failures.length > 0) throw new AggregateError(failures.map((f) => f.reason), `could not delete namespaces: ${failures.map((f) => String(f.reason)).join('; ')}`);
}

/** A namespace and its addresses on the pod network. */
export interface NetnsEndpoint {
  ns: string;
  ipv4: string;
  ipv6: string;
}

export interface PodNetwork {
  /** The "node": holds the bridge (its addresses are the pods' gateway) and routes to `remote`. */
  node: NetnsEndpoint;
  /** Namespaces on the bridge, like pods on one node. */
  pods: NetnsEndpoint[];
  /** A namespace on another subnet, reached through the node: a non-local peer. */
  remote: NetnsEndpoint;
  /** The node's own addresses on the link to `remote`. */
  nodeOnRemoteLink: { ipv4: string; ipv6: string };
  /** Deletes every namespace (and with them the veths and the bridge). Idempotent. */
  cleanup(): Promise<void>;
}

export interface PodNetworkOptions {
  pods: number;
  /** Default 10.213.0.0/24: the bridge is .1, pod i is .(10+i). */
  podSubnet4?: string;
  /** Default fd00:5a::/64, numbered like podSubnet4. */
  podSubnet6?: string;
  /** Default 10.214.0.0/24: the node is .1, the remote .2. */
  remoteSubnet4?: string;
  /** Default fd00:5a:0:1::/64, numbered like remoteSubnet4. */
  remoteSubnet6?: string;
}

export interface PodNetworkSetup {
  /** The namespace name for a label ('node', 'pod0', 'remote', ...): unique on the machine. */
  name(label: string): string;
  /** Runs once the topology is up, before it is handed out; a throw deletes it again. */
  verify?(network: PodNetwork): Promise<void>;
}

export const DEFAULT_POD_SUBNET4 = '10.213.0.0/24';

interface Subnet {
  address(host: number): string;
  prefixLength: number;
}

function ipv4Subnet(cidr: string): Subnet {
  const [base, length] = cidr.split('/');
  const prefixLength = Number(length);
  const octets = (base ?? '').split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255)) || !(prefixLength >= 8 && prefixLength <= 30)) {
    throw new Error(`bad IPv4 subnet ${cidr}`);
  }
  const network = octets.reduce((acc, o) => acc * 256 + o, 0);
  return {
    prefixLength,
    address(host) {
      if (host < 1 || host >= 2 ** (32 - prefixLength) - 1) throw new Error(`host ${host} does not fit in ${cidr}`);
      const n = network + host;
      return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
    },
  };
}

function ipv6Subnet(cidr: string): Subnet {
  const [base, length] = cidr.split('/');
  // Hosts are appended after "::", which needs a prefix written as "xxxx:...::/64".
  if (length !== '64' || !base?.endsWith('::')) throw new Error(`IPv6 subnet must look like "fd00:5a::/64", got ${cidr}`);
  return { prefixLength: 64, address: (host) => `${base}${host.toString(16)}` };
}

const GATEWAY_HOST = 1;
const FIRST_POD_HOST = 10;
const REMOTE_HOST = 2;

/** A veth pair: `outer` inside the node namespace, `eth0` inside `ns`. */
async function linkToNode(node: string, outer: string, ns: string): Promise<void> {
  await ip('-n', node, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
}

/** Addresses (IPv6 with nodad: no duplicate-address-detection wait) and default routes in `ns`. */
async function configureEndpoint(ns: string, v4: Subnet, v6: Subnet, host: number): Promise<NetnsEndpoint> {
  const endpoint = { ns, ipv4: v4.address(host), ipv6: v6.address(host) };
  await ip('-n', ns, 'addr', 'add', `${endpoint.ipv4}/${v4.prefixLength}`, 'dev', 'eth0');
  await ip('-n', ns, 'addr', 'add', `${endpoint.ipv6}/${v6.prefixLength}`, 'dev', 'eth0', 'nodad');
  await ip('-n', ns, 'link', 'set', 'eth0', 'up');
  await ip('-n', ns, 'route', 'add', 'default', 'via', v4.address(GATEWAY_HOST));
  await ip('-n', ns, '-6', 'route', 'add', 'default', 'via', v6.address(GATEWAY_HOST));
  return endpoint;
}

/**
 * Builds the topology entirely inside namespaces it creates:
 *
 *   pod i (eth0) ──veth── vp<i> ┐
 *                               ├─ br0 [node ns, gateway, forwarding] ─ vremote ──veth── remote (eth0)
 *
 * On any failure everything created so far is deleted again.
 */
export async function createPodNetwork(opts: PodNetworkOptions, setup: PodNetworkSetup): Promise<PodNetwork> {
  const pod4 = ipv4Subnet(opts.podSubnet4 ?? DEFAULT_POD_SUBNET4);
  const pod6 = ipv6Subnet(opts.podSubnet6 ?? 'fd00:5a::/64');
  const remote4 = ipv4Subnet(opts.remoteSubnet4 ?? '10.214.0.0/24');
  const remote6 = ipv6Subnet(opts.remoteSubnet6 ?? 'fd00:5a:0:1::/64');
  const created: string[] = [];
  const cleanup = () => deleteAllNetns(created);
  const netns = async (label: string) => {
    const name = await createNetns(setup.name(label));
    created.push(name);
    return name;
  };

  return cleanUpOnFailure(async () => {
    const node = await netns('node');
    await ip('-n', node, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', node, 'addr', 'add', `${pod4.address(GATEWAY_HOST)}/${pod4.prefixLength}`, 'dev', 'br0');
    await ip('-n', node, 'addr', 'add', `${pod6.address(GATEWAY_HOST)}/${pod6.prefixLength}`, 'dev', 'br0', 'nodad');
    await ip('-n', node, 'link', 'set', 'br0', 'up');
    // Forwarding is per namespace: this changes the node namespace only.
    await ip('netns', 'exec', node, 'sh', '-c',
      'echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding');

    const pods: NetnsEndpoint[] = [];
    for (let i = 0; i < opts.pods; i++) {
      const ns = await netns(`pod${i}`);
      await linkToNode(node, `vp${i}`, ns);
      await ip('-n', node, 'link', 'set', `vp${i}`, 'master', 'br0', 'up');
      pods.push(await configureEndpoint(ns, pod4, pod6, FIRST_POD_HOST + i));
    }

    const remoteNs = await netns('remote');
    await linkToNode(node, 'vremote', remoteNs);
    await ip('-n', node, 'addr', 'add', `${remote4.address(GATEWAY_HOST)}/${remote4.prefixLength}`, 'dev', 'vremote');
    await ip('-n', node, 'addr', 'add', `${remote6.address(GATEWAY_HOST)}/${remote6.prefixLength}`, 'dev', 'vremote', 'nodad');
    await ip('-n', node, 'link', 'set', 'vremote', 'up');
    const remote = await configureEndpoint(remoteNs, remote4, remote6, REMOTE_HOST);

    const network: PodNetwork = {
      node: { ns: node, ipv4: pod4.address(GATEWAY_HOST), ipv6: pod6.address(GATEWAY_HOST) },
      pods,
      remote,
      nodeOnRemoteLink: { ipv4: remote4.address(GATEWAY_HOST), ipv6: remote6.address(GATEWAY_HOST) },
      cleanup,
    };
    await setup.verify?.(network);
    return network;
  }, cleanup);
}
