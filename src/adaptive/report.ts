/**
 * The learned services as `status`, `conns` and the metrics show them: each
 * service's shape from its counters in sa_services (totals since the entry
 * was created, not the decayed sums the daemon judges), and its decision
 * from sa_decisions with the estimate behind it. Pure: callers read the maps.
 */
import type { Connection } from '../kernel/bpf-layout';
import { isV4Mapped } from '../config/ip-prefix';
import { serviceId, type Decision, type ServiceEntry, type ServiceKey } from '../kernel/services';
import type { PortOverrides } from '../config/config';
import { duration, size } from './policy';

/** What a service's connections get: a decision, an override, or nothing yet (accelerated while learning). */
export type ServiceState = 'accelerate' | 'plain' | 'learning' | 'override-accelerate' | 'override-plain';

export interface ServiceRow {
  /** Where clients connect: "127.0.0.1:8080@netns 4097", "10.0.0.5:80". */
  readonly service: string;
  /** The port the server accepted on (after NAT). */
  readonly serverPort: number;
  readonly connsAccelerated: number;
  readonly connsPlain: number;
  readonly connsClosed: number;
  readonly msgs: number;
  readonly bytes: number;
  readonly turns: number;
  /** Per closed connection; null before one closed. */
  readonly turnsPerConn: number | null;
  readonly msgsPerTurn: number | null;
  readonly avgWriteBytes: number | null;
  readonly avgLifetimeMs: number | null;
  readonly state: ServiceState;
  readonly reason: Decision['reason'];
  readonly explorePermille: number;
  /** The estimate behind the decision, per connection (ns); null without a decision. */
  readonly savedNsPerConn: number | null;
  readonly evidenceConns: number;
  readonly why: string;
}

const sum = (pair: readonly [bigint, bigint]) => Number(pair[0] + pair[1]);
const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

/** The override wins; then the decision; without one the service is learning (accelerated). */
export function serviceState(port: number, decision: Decision | undefined, overrides: PortOverrides | undefined): ServiceState {
  if (overrides?.accelerate.includes(port)) return 'override-accelerate';
  if (overrides?.plain.includes(port)) return 'override-plain';
  return decision?.verdict ?? 'learning';
}

export function whyOf(state: ServiceState, d: Decision | undefined, connsClosed: number): string {
  if (state === 'override-accelerate') return 'adaptiveOverrides: always accelerated';
  if (state === 'override-plain') return 'adaptiveOverrides: never accelerated';
  if (!d) return `learning (${connsClosed} connection${connsClosed === 1 ? '' : 's'} closed): accelerated`;
  const over = `${d.evidenceConns} connection${d.evidenceConns === 1 ? '' : 's'}`;
  if (d.verdict === 'accelerate') return `saves ${duration(d.savedNsPerConn)} per connection (over ${over})`;
  const cause = d.reason === 'small-writes' ? 'small writes' : 'short connections';
  const explore = d.explorePermille > 0 ? `; ${d.explorePermille / 10}% still accelerated to keep learning` : '';
  return `${cause}: loses ${duration(-d.savedNsPerConn)} per connection (over ${over})${explore}`;
}

/**
 * One row per service in sa_services, plus decided ones that were evicted
 * from it (the decision still applies), most connections first.
 */
export function serviceRows(
  services: readonly ServiceEntry[],
  decisions: ReadonlyMap<string, { key: ServiceKey; decision: Decision }>,
  overrides?: PortOverrides,
): ServiceRow[] {
  const rows: ServiceRow[] = [];
  const seen = new Set<string>();
  for (const { id, key, counters: c } of services) {
    seen.add(id);
    const decision = decisions.get(id)?.decision;
    const state = serviceState(key.port, decision, overrides);
    const closed = Number(c.connsClosed);
    const msgs = sum(c.msgs);
    const turns = sum(c.turns);
    const bytes = sum(c.bytes);
    rows.push({
      service: id,
      serverPort: c.serverPort,
      connsAccelerated: Number(c.connsAccelerated),
      connsPlain: Number(c.connsPlain),
      connsClosed: closed,
      msgs,
      bytes,
      turns,
      // Closed connections only would be exact, but the counters fold open ones every 64 messages; all paired ones it is.
      turnsPerConn: ratio(turns, Number(c.connsAccelerated)),
      msgsPerTurn: ratio(msgs, turns),
      avgWriteBytes: ratio(bytes, msgs),
      avgLifetimeMs: closed > 0 ? Number(c.lifetimeNs / BigInt(closed)) / 1e6 : null,
      state,
      reason: state.startsWith('override') ? 'none' : (decision?.reason ?? 'none'),
      explorePermille: decision?.explorePermille ?? 0,
      savedNsPerConn: decision?.savedNsPerConn ?? null,
      evidenceConns: decision?.evidenceConns ?? 0,
      why: whyOf(state, decision, closed),
    });
  }
  for (const [id, { key, decision }] of decisions) {
    if (seen.has(id)) continue;
    const state = serviceState(key.port, decision, overrides);
    rows.push({
      service: id,
      serverPort: 0,
      connsAccelerated: 0,
      connsPlain: 0,
      connsClosed: 0,
      msgs: 0,
      bytes: 0,
      turns: 0,
      turnsPerConn: null,
      msgsPerTurn: null,
      avgWriteBytes: null,
      avgLifetimeMs: null,
      state,
      reason: decision.reason,
      explorePermille: decision.explorePermille,
      savedNsPerConn: decision.savedNsPerConn,
      evidenceConns: decision.evidenceConns,
      why: `${whyOf(state, decision, 0)}; no recent traffic`,
    });
  }
  const weight = (r: ServiceRow) => r.connsAccelerated + r.connsPlain;
  return rows.sort((a, b) => weight(b) - weight(a) || a.service.localeCompare(b.service));
}

/** The service a connection counts for, as the programs key it (bpf/services.bpf.h). */
export function serviceKeyOf(c: Connection): ServiceKey {
  return { ip: c.dst.ip, port: c.dst.port, netns: isLoopback(c.dst.ip) ? c.client.netns : 0n };
}

export function serviceIdOf(c: Connection): string {
  return serviceId(serviceKeyOf(c));
}

function isLoopback(ip: Buffer): boolean {
  if (isV4Mapped(ip)) return ip[12] === 127;
  return ip.subarray(0, 15).every((b) => b === 0) && ip[15] === 1;
}

const STATE_TEXT: Record<ServiceState, string> = {
  accelerate: 'accelerate',
  plain: 'plain',
  learning: 'learning',
  'override-accelerate': 'accelerate (override)',
  'override-plain': 'plain (override)',
};

export function stateText(r: Pick<ServiceRow, 'state' | 'reason'>): string {
  return r.state === 'accelerate' || r.state === 'plain' ? `${r.state} (${r.reason})` : STATE_TEXT[r.state];
}

const num = (n: number | null, digits = 1) => (n === null ? '-' : n >= 100 ? String(Math.round(n)) : n.toFixed(digits));

const COLUMNS: readonly [string, (r: ServiceRow) => string][] = [
  ['SERVICE', (r) => r.service],
  ['SERVER PORT', (r) => (r.serverPort ? String(r.serverPort) : '-')],
  ['CONNS ACC/PLAIN', (r) => `${r.connsAccelerated}/${r.connsPlain}`],
  ['TURNS/CONN', (r) => num(r.turnsPerConn)],
  ['MSGS/TURN', (r) => num(r.msgsPerTurn)],
  ['AVG WRITE', (r) => (r.avgWriteBytes === null ? '-' : size(r.avgWriteBytes))],
  ['LIFETIME', (r) => (r.avgLifetimeMs === null ? '-' : duration(r.avgLifetimeMs * 1e6))],
  ['DECISION', stateText],
  ['WHY', (r) => r.why],
];

/** Rows shown by `status` before "… and N more". */
export const STATUS_SERVICE_LIMIT = 20;

export function formatServiceTable(rows: readonly ServiceRow[], limit = STATUS_SERVICE_LIMIT): string[] {
  if (rows.length === 0) return ['  none yet'];
  const shown = rows.slice(0, limit);
  const cells = [COLUMNS.map(([h]) => h), ...shown.map((r) => COLUMNS.map(([, get]) => get(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i].length)));
  const lines = cells.map((line) => `  ${line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')}`);
  if (rows.length > shown.length) lines.push(`  … and ${rows.length - shown.length} more (--json lists all)`);
  return lines;
}

/** "on: 12 services, 3 plain" for the status summary. */
export function adaptiveSummary(enabled: boolean | null, rows: readonly ServiceRow[]): string {
  if (enabled === null) return 'unknown (pins from before the adaptive policy)';
  const plain = rows.filter((r) => r.state === 'plain').length;
  const learning = rows.filter((r) => r.state === 'learning').length;
  const counts = `${rows.length} service${rows.length === 1 ? '' : 's'} (${plain} plain, ${learning} learning)`;
  return enabled ? `on: ${counts}` : `off: every connection that pairs is accelerated; ${counts} learned`;
}
