/**
 * `sockaccel conns`: the accelerated connections right now, read from the
 * pinned pairing table (read-only fd). Each entry of sa_pairs is one
 * connection as both of its ends registered it: the client's own endpoint
 * and where it connected, where the server accepted it (these differ under
 * NAT, e.g. a mesh sidecar's redirect), each end's network namespace and
 * owner, and when the client was established. Bytes redirected in each
 * direction come from the sockets' own counters, read with a BPF iterator
 * (bytes.ts); where that cannot run, the connections are listed without them.
 */
import net from 'node:net';
import { Connection, formatEndpoint } from '../kernel/bpf-layout';
import { parseIp } from '../config/ip-prefix';
import { mapPinPath, pinExists, withPinnedFd } from '../kernel/pins';
import { readPairs } from '../kernel/pairs';
import { UsageError } from '../common/errors';
import { explainPinError, requirePin } from '../kernel/pin-access';
import { netnsNames } from './netns';
import { ConnBytes, readConnBytes } from './bytes';
import type { ParsedCommandLine } from '../cli/cli-args';
import { loadConfig, parsePortOverrides, type PortOverrides } from '../config/config';
import { readDecisions } from '../kernel/services';
import { serviceIdOf, serviceState, stateText } from '../adaptive/report';

export interface ConnsFilter {
  /** Matches the client's, the destination's or the server's port. */
  readonly port?: number;
  /** Matches the client's, the destination's or the server's address (16 bytes, IPv4-mapped). */
  readonly addr?: Buffer;
}

/** One accelerated connection as `conns` prints it. */
export interface ConnRow {
  /** The client's own endpoint. */
  readonly client: string;
  /** Where the client connected. */
  readonly destination: string;
  /** Where the server accepted the connection (differs from destination under NAT). */
  readonly server: string;
  /** Network namespace of each end: a name from /run/netns, "host", or the cookie. */
  readonly clientNetns: string;
  readonly serverNetns: string;
  readonly clientUid: number;
  readonly serverUid: number;
  /** Bytes each end sent that were redirected into the other; null if they could not be read. */
  readonly bytesClientToServer: number | null;
  readonly bytesServerToClient: number | null;
  /** When the client end was established (ISO 8601), and how long ago. */
  readonly since: string;
  readonly ageSeconds: number;
  /** The service it counts for (where the client connected, see `status`). */
  readonly service: string;
  /** Messages (send() calls) and turns (sends answering the peer) each end made: [client→server, server→client]. */
  readonly msgs: readonly [number, number];
  readonly turns: readonly [number, number];
  /** The service's decision now ("learning" without one); applies to new connections, never to this one. */
  readonly decision: string;
}

export function parseConnsFilter(flags: Readonly<Record<string, string | boolean>>): ConnsFilter {
  const filter: { port?: number; addr?: Buffer } = {};
  if (typeof flags.port === 'string') {
    const port = Number(flags.port);
    if (!/^\d+$/.test(flags.port) || port < 1 || port > 65535) throw new UsageError(`--port must be a port number 1..65535, not "${flags.port}"`);
    filter.port = port;
  }
  if (typeof flags.addr === 'string') {
    if (net.isIP(flags.addr) === 0) throw new UsageError(`--addr must be an IPv4 or IPv6 address, not "${flags.addr}"`);
    filter.addr = parseIp(flags.addr);
  }
  return filter;
}

export function matches(c: Connection, f: ConnsFilter): boolean {
  const ends = [
    { ip: c.client.ip, port: c.client.port },
    c.dst,
    { ip: c.server.ip, port: c.server.port },
  ];
  if (f.port !== undefined && !ends.some((e) => e.port === f.port)) return false;
  if (f.addr !== undefined && !ends.some((e) => e.ip.equals(f.addr!))) return false;
  return true;
}

/**
 * `createdNs` is bpf_ktime_get_ns(), CLOCK_MONOTONIC, the clock behind
 * process.hrtime.bigint(): the difference is the age, and the wall-clock
 * time follows from now.
 */
export function toRow(
  c: Connection,
  now: { monoNs: bigint; wallMs: number },
  names: ReadonlyMap<bigint, string>,
  bytes: ConnBytes | null,
  decisions: ReadonlyMap<string, string> = new Map(),
): ConnRow {
  const service = serviceIdOf(c);
  const ageNs = now.monoNs > c.createdNs ? now.monoNs - c.createdNs : 0n;
  const ageMs = Number(ageNs / 1_000_000n);
  const netns = (cookie: bigint) => names.get(cookie) ?? `cookie:${cookie}`;
  return {
    client: formatEndpoint(c.client.ip, c.client.port),
    destination: formatEndpoint(c.dst.ip, c.dst.port),
    server: formatEndpoint(c.server.ip, c.server.port),
    clientNetns: netns(c.client.netns),
    serverNetns: netns(c.server.netns),
    clientUid: c.client.uid,
    serverUid: c.server.uid,
    bytesClientToServer: bytes?.clientToServer ?? null,
    bytesServerToClient: bytes?.serverToClient ?? null,
    since: new Date(now.wallMs - ageMs).toISOString(),
    ageSeconds: ageMs / 1000,
    service,
    msgs: [Number(c.shape.msgs[0]), Number(c.shape.msgs[1])],
    turns: [Number(c.shape.turns[0]), Number(c.shape.turns[1])],
    decision: decisions.get(service) ?? 'learning',
  };
}

/** 12.3s, 5m02s, 2h03m, 3d04h. */
export function formatAge(seconds: number): string {
  const s = Math.floor(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

const COLUMNS: readonly [string, (r: ConnRow) => string][] = [
  ['CLIENT', (r) => r.client],
  ['DESTINATION', (r) => r.destination],
  ['SERVER', (r) => r.server],
  ['NETNS (CLIENT/SERVER)', (r) => `${r.clientNetns}/${r.serverNetns}`],
  ['UID (C/S)', (r) => `${r.clientUid}/${r.serverUid}`],
  ['BYTES C>S', (r) => String(r.bytesClientToServer ?? '-')],
  ['BYTES S>C', (r) => String(r.bytesServerToClient ?? '-')],
  ['SERVICE', (r) => r.service],
  ['MSGS C>S/S>C', (r) => `${r.msgs[0]}/${r.msgs[1]}`],
  ['TURNS C>S/S>C', (r) => `${r.turns[0]}/${r.turns[1]}`],
  ['DECISION', (r) => r.decision],
  ['AGE', (r) => formatAge(r.ageSeconds)],
  ['SINCE', (r) => r.since],
];

export function formatConns(rows: readonly ConnRow[]): string {
  const cells = [COLUMNS.map(([h]) => h), ...rows.map((r) => COLUMNS.map(([, get]) => get(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...cells.map((line) => line[i].length)));
  const lines = cells.map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]))).join('  '));
  return `${lines.join('\n')}\n${rows.length} accelerated connection${rows.length === 1 ? '' : 's'}\n`;
}

export interface ListOptions {
  /** Where conns_iter.bpf.o is; the daemon's objectDir. */
  readonly objectDir?: string;
  /** Told why the byte counts are missing (null in every row). */
  readonly onBytesUnavailable?: (reason: string) => void;
  /** adaptiveOverrides from the configuration, to name the overridden services' state. */
  readonly overrides?: PortOverrides;
}

/** Paired connections (both ends redirected) matching `filter`, oldest first. */
export function listConnections(pinRoot: string, filter: ConnsFilter = {}, opts: ListOptions = {}): ConnRow[] {
  requirePin(pinRoot, mapPinPath(pinRoot, 'sa_pairs'));
  const now = { monoNs: process.hrtime.bigint(), wallMs: Date.now() };
  let pairs: Connection[];
  try {
    pairs = readPairs(pinRoot);
  } catch (err) {
    throw explainPinError(pinRoot, err);
  }
  const conns = pairs.filter((c) => c.state === 'paired' && matches(c, filter));
  if (conns.length === 0) return [];
  const bytes = bytesOrNull(pinRoot, opts);
  const names = netnsNames();
  const decisions = decisionTexts(pinRoot, conns, opts.overrides);
  return conns
    .sort((a, b) => (a.createdNs < b.createdNs ? -1 : a.createdNs > b.createdNs ? 1 : 0))
    // A connection whose sockets closed since the pairs read has no records.
    .map((c) => toRow(c, now, names, bytes && (bytes.get(c.keyHex) ?? { clientToServer: 0, serverToClient: 0 }), decisions));
}

/** Each listed connection's service → its decision in words. */
function decisionTexts(pinRoot: string, conns: readonly Connection[], overrides?: PortOverrides): Map<string, string> {
  const pin = mapPinPath(pinRoot, 'sa_decisions');
  const decided = pinExists(pin) ? withPinnedFd(pin, readDecisions) : new Map();
  const out = new Map<string, string>();
  for (const c of conns) {
    const id = serviceIdOf(c);
    const d = decided.get(id)?.decision;
    const text = stateText({ state: serviceState(c.dst.port, d, overrides), reason: d?.reason ?? 'none' });
    // An accelerated connection of a plain service is one of its explored share.
    out.set(id, d?.verdict === 'plain' && !text.includes('override') ? `${text}, explored` : text);
  }
  return out;
}

/** The byte counters, or null (reported) if the iterator cannot run here. */
function bytesOrNull(pinRoot: string, opts: ListOptions): Map<string, ConnBytes> | null {
  try {
    return readConnBytes(pinRoot, opts.objectDir);
  } catch (err) {
    opts.onBytesUnavailable?.((err as Error).message);
    return null;
  }
}

export async function runConnsCommand(cmd: ParsedCommandLine): Promise<number> {
  const config = loadConfig({ argv: cmd.configArgv });
  const rows = listConnections(config.pinRoot, parseConnsFilter(cmd.commandFlags), {
    objectDir: config.objectDir || undefined,
    overrides: parsePortOverrides(config.adaptiveOverrides),
    onBytesUnavailable: (reason) => process.stderr.write(`sockaccel: bytes per connection unavailable: ${reason}\n`),
  });
  process.stdout.write(cmd.commandFlags.json ? `${JSON.stringify(rows, null, 2)}\n` : formatConns(rows));
  return 0;
}
