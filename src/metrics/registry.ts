/**
 * The Prometheus metrics, all computed at scrape time from one read of the
 * per-CPU stats array (a single bpf() lookup, summed over CPUs): a scrape
 * costs the same with 10 or 65,000 accelerated sockets, because nothing
 * walks the sockhashes. Metrics carry no addresses or ports: connection
 * details stay with `sockaccel conns`, behind root.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { Stats, StatName } from '../kernel/bpf-layout';
import { acceleratedSockets } from '../kernel/stats';

interface Series {
  readonly metric: string;
  readonly help: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * Every counter of struct sa_stats, as a series. A Record over StatName, so
 * a counter added to the BPF side does not compile until it is exposed.
 */
export const STAT_SERIES: Readonly<Record<StatName, Series>> = {
  sockets_inserted: { metric: 'sockaccel_sockets_inserted_total', help: 'Sockets put into a sockhash (both ends of each paired connection count).' },
  sockets_removed: { metric: 'sockaccel_sockets_removed_total', help: 'Inserted sockets that left their sockhash again (close, or fallback before pairing).' },
  insert_fail_full: {
    metric: 'sockaccel_insert_failures_total',
    help: 'Sockets that could not be inserted; reason="map_full" means raise mapSize.',
    labels: { reason: 'map_full' },
  },
  insert_fail_other: { metric: 'sockaccel_insert_failures_total', help: '', labels: { reason: 'other' } },
  msgs_redirected: {
    metric: 'sockaccel_messages_total',
    help: 'send() calls seen by the sk_msg programs: path="redirected" went socket to socket, path="passed" over plain TCP.',
    labels: { path: 'redirected' },
  },
  msgs_passed: { metric: 'sockaccel_messages_total', help: '', labels: { path: 'passed' } },
  bytes_redirected: {
    metric: 'sockaccel_bytes_total',
    help: 'Bytes of those messages, by path (redirected or passed).',
    labels: { path: 'redirected' },
  },
  bytes_passed: { metric: 'sockaccel_bytes_total', help: '', labels: { path: 'passed' } },
  pair_fallback: {
    metric: 'sockaccel_pair_fallbacks_total',
    help: 'Connections whose client was inserted but whose server never paired; they stay plain TCP.',
  },
  skipped_not_local: {
    metric: 'sockaccel_connections_skipped_total',
    help: 'Connections never considered, by reason: not_local (peer off this node), no_listener (no listener seen in the cgroup), port (port filters), mesh_policy (mesh rules refused the server end), adaptive (the service was learned to lose from acceleration).',
    labels: { reason: 'not_local' },
  },
  skipped_no_listener: { metric: 'sockaccel_connections_skipped_total', help: '', labels: { reason: 'no_listener' } },
  skipped_port: { metric: 'sockaccel_connections_skipped_total', help: '', labels: { reason: 'port' } },
  skipped_policy: { metric: 'sockaccel_connections_skipped_total', help: '', labels: { reason: 'mesh_policy' } },
  skipped_adaptive: { metric: 'sockaccel_connections_skipped_total', help: '', labels: { reason: 'adaptive' } },
  adaptive_explored: {
    metric: 'sockaccel_adaptive_explored_total',
    help: 'Connections accelerated although their service is decided plain: the share that keeps the adaptive policy learning.',
  },
  services_full: { metric: 'sockaccel_adaptive_services_full_total', help: 'Connections whose service could not be recorded (services map full).' },
  listeners_seen: { metric: 'sockaccel_listeners_seen_total', help: 'listen() calls seen in the attached cgroup.' },
  mesh_candidates: { metric: 'sockaccel_mesh_candidates_total', help: 'Clients inserted because a service mesh redirects their connection to a local proxy.' },
};

export interface DaemonInfo {
  readonly version: string;
  readonly kernel: string;
  /** By program role, e.g. { sockops: 12, toServer: 13 }. */
  readonly programIds: Readonly<Record<string, number>>;
  /** Capacity of each sized map, by pin name (e.g. clients, servers, pairs). */
  readonly capacities: Readonly<Record<string, number>>;
}

/** The adaptive policy as the daemon holds it (no map reads at scrape time). */
export interface AdaptiveSnapshot {
  readonly enabled: boolean;
  /** One entry per service the daemon tracks: its decision ("learning" without one, "override" by adaptiveOverrides). */
  readonly services: readonly { readonly decision: 'accelerate' | 'plain' | 'learning' | 'override'; readonly reason: string }[];
  /** Decisions changed (written or deleted) since the start. */
  readonly changes: number;
}

/** Every (decision, reason) pair a service can be in, so each series exists from the first scrape. */
const ADAPTIVE_STATES: readonly [string, string][] = [
  ['accelerate', 'gains'],
  ['plain', 'short_connections'],
  ['plain', 'small_writes'],
  ['learning', 'none'],
  ['override', 'none'],
];

export interface DaemonMetrics {
  readonly registry: Registry;
  /** Reads the counters once; call before each registry.metrics(). */
  refresh(): void;
}

/** camelCase role → snake_case label: toServer → to_server. */
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export function createDaemonMetrics(readStats: () => Stats, info: DaemonInfo, readAdaptive?: () => AdaptiveSnapshot): DaemonMetrics {
  const registry = new Registry();
  let snapshot = readStats();
  let adaptive = readAdaptive?.();

  const byMetric = new Map<string, { help: string; stats: StatName[] }>();
  for (const [stat, s] of Object.entries(STAT_SERIES) as [StatName, Series][]) {
    const entry = byMetric.get(s.metric) ?? { help: '', stats: [] };
    entry.help ||= s.help;
    entry.stats.push(stat);
    byMetric.set(s.metric, entry);
  }
  for (const [name, { help, stats }] of byMetric) {
    const labelNames = [...new Set(stats.flatMap((st) => Object.keys(STAT_SERIES[st].labels ?? {})))];
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      // The kernel keeps the totals; each scrape replaces ours with them.
      collect() {
        this.reset();
        for (const st of stats) this.inc(STAT_SERIES[st].labels ?? {}, Number(snapshot[st]));
      },
    });
  }

  new Gauge({
    name: 'sockaccel_accelerated_sockets',
    help: 'Sockets in the sockhashes now (inserted minus removed; two per accelerated connection).',
    registers: [registry],
    collect() {
      this.set(Number(acceleratedSockets(snapshot)));
    },
  });
  const capacity = new Gauge({ name: 'sockaccel_map_capacity_entries', help: 'Capacity of each map (the sockhashes hold one socket per entry).', labelNames: ['map'], registers: [registry] });
  for (const [map, n] of Object.entries(info.capacities)) capacity.set({ map }, n);

  const programLabels = Object.fromEntries(Object.entries(info.programIds).map(([role, id]) => [`${snake(role)}_program_id`, String(id)]));
  new Gauge({
    name: 'sockaccel_info',
    help: 'Always 1; the labels say which daemon version, kernel and BPF program ids are running.',
    labelNames: ['version', 'kernel', ...Object.keys(programLabels)],
    registers: [registry],
  }).set({ version: info.version, kernel: info.kernel, ...programLabels }, 1);

  if (readAdaptive) registerAdaptive(registry, () => adaptive!);

  return {
    registry,
    refresh() {
      snapshot = readStats();
      adaptive = readAdaptive?.();
    },
  };
}

/**
 * The adaptive policy in aggregate: how many services are in each state,
 * not which (service labels would carry addresses and ports, which the
 * metrics never do; `sockaccel status` lists them, behind root).
 */
function registerAdaptive(registry: Registry, current: () => AdaptiveSnapshot): void {
  new Gauge({
    name: 'sockaccel_adaptive_enabled',
    help: '1 when new connections follow the learned decisions, 0 when everything that pairs is accelerated.',
    registers: [registry],
    collect() {
      this.set(current().enabled ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sockaccel_adaptive_services',
    help: 'Services the daemon tracks, by decision (accelerate, plain, learning, override) and reason (gains, short_connections, small_writes, none).',
    labelNames: ['decision', 'reason'],
    registers: [registry],
    collect() {
      const counts = new Map(ADAPTIVE_STATES.map(([d, r]) => [`${d}/${r}`, 0]));
      for (const s of current().services) {
        const k = `${s.decision}/${s.reason.replace(/-/g, '_')}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      for (const [k, n] of counts) {
        const [decision, reason] = k.split('/');
        this.set({ decision, reason }, n);
      }
    },
  });
  new Counter({
    name: 'sockaccel_adaptive_decision_changes_total',
    help: 'Service decisions changed (each is also logged); a steady climb means services flapping between plain and accelerated.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(current().changes);
    },
  });
}
