/**
 * `sockaccel status`: what is in the kernel right now, read from the pins
 * (read-only fds), so it works beside a running daemon and after it stopped.
 */
import { bpfMapLookupElem, bpfProgGetFdById, linkInfo, mapInfo, progInfo } from '../kernel/libbpf';
import { close } from '../kernel/libc';
import { SOCKOPS_PROGRAMS } from '../daemon/loader';
import { CONN_KEY, decodeLpmKey, decodeMeta, LISTENER_KEY, LPM_KEY, Stats } from '../kernel/bpf-layout';
import { readAdaptiveSwitch, readDecisions, readServices } from '../kernel/services';
import { adaptiveSummary, formatServiceTable, serviceRows, type ServiceRow } from '../adaptive/report';
import type { PortOverrides } from '../config/config';
import { readPairs } from '../kernel/pairs';
import { formatPrefix } from '../config/ip-prefix';
import { linkPinPath, mapPinPath, pinExists, withPinnedFd } from '../kernel/pins';
import { mapKeys } from '../kernel/map-iter';
import { explainPinError, requirePin } from '../kernel/pin-access';
import { acceleratedSockets, readStats } from '../kernel/stats';
import { readEndpointSources } from '../daemon/local-endpoints';
import { detectedMeshes } from '../daemon/mesh';

export interface LinkStatus {
  readonly id: number;
  readonly progId: number;
  readonly cgroupId?: string;
}

export interface StatusReport {
  readonly pinRoot: string;
  /** accepting: new connections are accelerated; draining: a stopped daemon's program. */
  readonly sockopsMode: 'accepting' | 'draining' | 'detached';
  readonly layoutVersion: number | null;
  readonly links: { readonly sockops: LinkStatus | null; readonly toServer: LinkStatus | null; readonly toClient: LinkStatus | null };
  /** Sockets in the clients and servers maps now, and each map's capacity. */
  readonly sockets: { readonly clients: number; readonly servers: number; readonly capacity: number };
  readonly acceleratedSockets: string;
  readonly pairs: Record<string, number>;
  readonly listeners: number;
  readonly localEndpoints: string[];
  /** Where the running daemon found each local endpoint (a route, an interface, the config); {} without a daemon. */
  readonly localEndpointSources: Record<string, string>;
  /** Network namespaces (by cookie) where a mesh sidecar was detected, and which mesh. */
  readonly meshNamespaces: Record<string, string>;
  readonly counters: Record<string, string>;
  /** The adaptive policy: its switch (null: pins from before it) and every learned service. */
  readonly adaptive: { readonly enabled: boolean | null; readonly services: readonly ServiceRow[] };
}

export interface StatusOptions {
  /** From the configuration (adaptiveOverrides), to mark the overridden services. */
  readonly overrides?: PortOverrides;
}

/**
 * Throws EnvironmentError when nothing is pinned, PrivilegeError when this
 * process may not read the pins (never "not running" about a daemon that is).
 */
export function readStatus(pinRoot: string, opts: StatusOptions = {}): StatusReport {
  requirePin(pinRoot, mapPinPath(pinRoot, 'sa_stats'));
  try {
    return readPinnedStatus(pinRoot, opts);
  } catch (err) {
    throw explainPinError(pinRoot, err);
  }
}

function readPinnedStatus(pinRoot: string, opts: StatusOptions): StatusReport {
  const stats: Stats = withPinnedFd(mapPinPath(pinRoot, 'sa_stats'), readStats);
  const clients = withPinnedFd(mapPinPath(pinRoot, 'sa_clients'), (fd) => ({
    entries: countKeys(fd, CONN_KEY.size),
    capacity: mapInfo(fd).maxEntries,
  }));
  const servers = withPinnedFd(mapPinPath(pinRoot, 'sa_servers'), (fd) => countKeys(fd, CONN_KEY.size));
  return {
    pinRoot,
    sockopsMode: sockopsMode(linkPinPath(pinRoot, 'sockops')),
    layoutVersion: withPinnedFd(mapPinPath(pinRoot, 'sa_meta'), (fd) => {
      const v = Buffer.alloc(8);
      return bpfMapLookupElem(fd, Buffer.alloc(4), v) ? decodeMeta(v).layoutVersion : null;
    }),
    links: {
      sockops: readLink(linkPinPath(pinRoot, 'sockops')),
      toServer: readLink(linkPinPath(pinRoot, 'toServer')),
      toClient: readLink(linkPinPath(pinRoot, 'toClient')),
    },
    sockets: { clients: clients.entries, servers, capacity: clients.capacity },
    acceleratedSockets: acceleratedSockets(stats).toString(),
    pairs: pairStates(pinRoot),
    listeners: withPinnedFd(mapPinPath(pinRoot, 'sa_listeners'), (fd) => countKeys(fd, LISTENER_KEY.size)),
    localEndpoints: withPinnedFd(mapPinPath(pinRoot, 'sa_local'), (fd) =>
      [...mapKeys(fd, LPM_KEY.size)].map((k) => formatPrefix(decodeLpmKey(k))).sort(),
    ),
    localEndpointSources: readEndpointSources(pinRoot) ?? {},
    // Pins of a daemon from before mesh detection have no mesh maps.
    meshNamespaces: pinExists(mapPinPath(pinRoot, 'sa_mesh_netns'))
      ? withPinnedFd(mapPinPath(pinRoot, 'sa_mesh_presets'), (presets) =>
          withPinnedFd(mapPinPath(pinRoot, 'sa_mesh_netns'), (netns) => detectedMeshes(presets, netns)),
        )
      : {},
    counters: Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v.toString()])),
    adaptive: readAdaptive(pinRoot, opts),
  };
}

function readAdaptive(pinRoot: string, opts: StatusOptions): StatusReport['adaptive'] {
  // Pins of a daemon from before the adaptive policy (layout < 5) have none of its maps.
  if (!pinExists(mapPinPath(pinRoot, 'sa_policy'))) return { enabled: null, services: [] };
  const enabled = withPinnedFd(mapPinPath(pinRoot, 'sa_policy'), readAdaptiveSwitch);
  const services = withPinnedFd(mapPinPath(pinRoot, 'sa_services'), readServices);
  const decisions = withPinnedFd(mapPinPath(pinRoot, 'sa_decisions'), readDecisions);
  return { enabled, services: serviceRows(services, decisions, opts.overrides) };
}

function countKeys(fd: number, keySize: number): number {
  let n = 0;
  for (const _ of mapKeys(fd, keySize)) n++;
  return n;
}

function pairStates(pinRoot: string): Record<string, number> {
  const counts: Record<string, number> = { pending: 0, paired: 0, fallback: 0 };
  for (const c of readPairs(pinRoot)) counts[c.state] = (counts[c.state] ?? 0) + 1;
  return counts;
}

/** Which sock_ops program the cgroup link runs: accepting, draining, or none. */
export function sockopsMode(pin: string): 'accepting' | 'draining' | 'detached' {
  const link = readLink(pin);
  if (!link) return 'detached';
  const fd = bpfProgGetFdById(link.progId);
  try {
    return progInfo(fd).name === SOCKOPS_PROGRAMS.drain ? 'draining' : 'accepting';
  } finally {
    close(fd);
  }
}

function readLink(pin: string): LinkStatus | null {
  if (!pinExists(pin)) return null;
  // links take no access flags: BPF_F_RDONLY on a link pin is EINVAL
  return withPinnedFd(pin, (fd) => {
    const info = linkInfo(fd);
    return { id: info.id, progId: info.progId, ...(info.cgroupId !== undefined ? { cgroupId: info.cgroupId.toString() } : {}) };
  }, false);
}

const MODE_TEXT = {
  accepting: 'accelerated (daemon running)',
  draining: 'not accelerated: daemon stopped, existing connections still redirected',
  detached: 'not accelerated: sock_ops program detached',
} as const;

/** One row per local endpoint, with where the daemon found it. */
function localEndpointRows(r: StatusReport): [string, string][] {
  if (r.localEndpoints.length === 0) return [['local endpoints', 'none']];
  return r.localEndpoints.map((p, i) => {
    const source = r.localEndpointSources[p];
    return [i === 0 ? 'local endpoints' : '', source ? `${p}  (${source})` : p];
  });
}

/** "istio in 2 namespaces (cookies 4099, 4103)", or none. */
function meshText(byCookie: Record<string, string>): string {
  const byMesh = new Map<string, string[]>();
  for (const [cookie, mesh] of Object.entries(byCookie)) byMesh.set(mesh, [...(byMesh.get(mesh) ?? []), cookie]);
  if (byMesh.size === 0) return 'none detected';
  return [...byMesh].map(([mesh, cookies]) => `${mesh} in ${cookies.length} namespace${cookies.length === 1 ? '' : 's'} (cookies ${cookies.join(', ')})`).join('; ');
}

export function formatStatus(r: StatusReport): string {
  const rows: [string, string][] = [
    ['pin root', r.pinRoot],
    ['new connections', MODE_TEXT[r.sockopsMode]],
    ['layout version', String(r.layoutVersion ?? 'unknown')],
    ['sock_ops link', r.links.sockops ? `id ${r.links.sockops.id}, prog ${r.links.sockops.progId}, cgroup id ${r.links.sockops.cgroupId}` : 'none'],
    ['sk_msg links', [r.links.toServer, r.links.toClient].map((l) => (l ? `id ${l.id} (prog ${l.progId})` : 'none (legacy attach)')).join(', ')],
    ['sockets', `${r.sockets.clients} clients + ${r.sockets.servers} servers (each map holds ${r.sockets.capacity})`],
    ['connections', Object.entries(r.pairs).map(([k, v]) => `${v} ${k}`).join(', ')],
    ['listeners in cgroup', String(r.listeners)],
    ...localEndpointRows(r),
    ['mesh sidecars', meshText(r.meshNamespaces)],
    ['adaptive policy', adaptiveSummary(r.adaptive.enabled, r.adaptive.services)],
  ];
  const counters = Object.entries(r.counters).map(([k, v]) => [k, v] as [string, string]);
  const width = Math.max(...[...rows, ...counters].map(([k]) => k.length));
  const line = ([k, v]: [string, string]) => `${k.padEnd(width)}  ${v}`;
  const services = r.adaptive.enabled === null ? [] : ['', 'services:', ...formatServiceTable(r.adaptive.services)];
  return [...rows.map(line), ...services, '', 'counters:', ...counters.map(line)].join('\n');
}
