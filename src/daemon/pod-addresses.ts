/**
 * `localCidrs: ["auto"]`: which addresses live on this node, read from the
 * interfaces and the main routing tables of the daemon's network namespace
 * (the node's) with iproute2's JSON output. Every prefix carries the route or
 * interface it came from, for the log, `status` and `doctor`.
 *
 * The CNI shapes recognised, and why each is local:
 * - Calico-style (also Cilium with endpoint routes, kube-router's veths): a
 *   /32 or /128 route per pod, no gateway, through the pod's host-side veth.
 *   A connected subnet on a veth (protocol kernel, from an address on the
 *   veth) is a point-to-point link to something else, not a pod, and is not
 *   taken.
 * - Bridge-style (flannel's cni0, kubenet's cbr0, the bridge plugin, docker0):
 *   the connected subnet of a bridge whose ports are all veths. A bridge with
 *   a physical (or any non-veth) port is an uplink bridge: its subnet is the
 *   LAN, not this node.
 * - Cilium-style: a route through cilium_host whose prefix holds
 *   cilium_host's own address (the node's pod CIDR; the router IP is taken
 *   from it). In tunnel mode the other nodes' pod CIDRs also route through
 *   cilium_host, but without that address in them: those stay remote.
 * Never taken: default routes, routes via a gateway (other nodes, the
 * uplink), blackhole/unreachable routes (Calico's block routes), link-local
 * prefixes, and any route through a physical interface.
 *
 * The node's own interface addresses are local too (as host prefixes).
 */
import { execFile } from 'node:child_process';
import { EnvironmentError } from '../common/errors';
import { formatPrefix, IpPrefix, parsePrefix, prefixContains } from '../config/ip-prefix';

/** What `ip -json -details addr show` says about one interface (the fields used here). */
export interface IpLink {
  readonly ifname: string;
  /** The bridge (or bond) this interface is a port of. */
  readonly master?: string;
  readonly linkinfo?: { readonly info_kind?: string };
  readonly addr_info?: readonly { readonly family: string; readonly local: string; readonly prefixlen: number }[];
}

/** One route of `ip -json route show` (the fields used here). */
export interface IpRoute {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
  /** Absent for unicast. */
  readonly type?: string;
}

export interface FoundPrefix {
  readonly prefix: IpPrefix;
  /** Where it came from, e.g. "route 10.1.2.3/32 dev cali12 (pod route via veth)". */
  readonly source: string;
}

export interface NodeNetwork {
  readonly links: readonly IpLink[];
  readonly routes: readonly IpRoute[];
}

/** The localCidrs entry that turns discovery on. */
export const AUTO = 'auto';

export const CILIUM_HOST = 'cilium_host';
const LINK_LOCAL = [parsePrefix('fe80::/10'), parsePrefix('169.254.0.0/16')];

const kind = (link: IpLink | undefined): string | undefined => link?.linkinfo?.info_kind;

/** Bridges whose every port is a veth: pod bridges, not uplinks. */
function podBridges(links: readonly IpLink[]): Set<string> {
  const bridges = new Set(links.filter((l) => kind(l) === 'bridge').map((l) => l.ifname));
  for (const l of links) {
    if (l.master && bridges.has(l.master) && kind(l) !== 'veth') bridges.delete(l.master);
  }
  return bridges;
}

function addressesOf(link: IpLink | undefined): IpPrefix[] {
  return (link?.addr_info ?? []).map((a) => parsePrefix(a.local));
}

/** Why `route` makes its prefix local, or null if it does not. */
function routeSource(route: IpRoute, byName: ReadonlyMap<string, IpLink>, bridges: ReadonlySet<string>, prefix: IpPrefix): string | null {
  if (route.type !== undefined && route.type !== 'unicast') return null;
  if (!route.dev) return null;
  const dev = byName.get(route.dev);
  const text = `route ${formatPrefix(prefix)} dev ${route.dev}`;
  if (route.dev === CILIUM_HOST) {
    // The node's pod CIDR holds cilium_host's router IP; other nodes' do not.
    return addressesOf(dev).some((a) => prefixContains(prefix, a)) ? `${text} (cilium_host, holds its router address)` : null;
  }
  if (route.gateway) return null;
  if (kind(dev) === 'veth' && route.protocol !== 'kernel') return `${text} (pod route via veth)`;
  if (bridges.has(route.dev) && route.protocol === 'kernel') return `subnet ${formatPrefix(prefix)} of bridge ${route.dev} (all ports veths)`;
  return null;
}

/** The pods' prefixes on this node, each with the route that shows it. */
export function podPrefixes(net: NodeNetwork): FoundPrefix[] {
  const byName = new Map(net.links.map((l) => [l.ifname, l]));
  const bridges = podBridges(net.links);
  const out: FoundPrefix[] = [];
  for (const route of net.routes) {
    if (route.dst === 'default') continue;
    let prefix: IpPrefix;
    try {
      prefix = parsePrefix(route.dst);
    } catch {
      continue; // not an address route (e.g. a multicast or unusual entry)
    }
    if (LINK_LOCAL.some((ll) => prefixContains(ll, prefix))) continue;
    const source = routeSource(route, byName, bridges, prefix);
    if (source) out.push({ prefix, source });
  }
  return out;
}

/** Every address of every interface, as a host prefix (link-local IPv6 included: harmless, and it is ours). */
export function interfaceAddresses(net: NodeNetwork): FoundPrefix[] {
  return net.links.flatMap((l) =>
    (l.addr_info ?? []).map((a) => ({ prefix: parsePrefix(formatHost(a.local)), source: `address of ${l.ifname}` })),
  );
}

/** A bare address as the host prefix parsePrefix reads it (a zone index dropped). */
function formatHost(address: string): string {
  return address.split('%')[0];
}

const IP_TIMEOUT_MS = 10_000;

function ipJson<T>(args: readonly string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['-json', ...args], { timeout: IP_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
        reject(new EnvironmentError('the `ip` command is missing: the local endpoints are read from the node\'s interfaces and routes with it', { hint: 'install iproute2' }));
        return;
      }
      if (err) {
        reject(new Error(`ip -json ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout || '[]') as T);
      } catch (parseErr) {
        reject(new Error(`ip -json ${args.join(' ')}: unreadable output (${(parseErr as Error).message})`));
      }
    });
  });
}

/** The interfaces (with addresses) and the main IPv4 and IPv6 routing tables of this process's namespace. */
export async function readNodeNetwork(): Promise<NodeNetwork> {
  const [links, routes4, routes6] = await Promise.all([
    ipJson<IpLink[]>(['-details', 'addr', 'show']),
    ipJson<IpRoute[]>(['-4', 'route', 'show', 'table', 'main']),
    ipJson<IpRoute[]>(['-6', 'route', 'show', 'table', 'main']),
  ]);
  return { links, routes: [...routes4, ...routes6] };
}
