/**
 * Proof that one connection is accelerated, as the zero-configuration tests
 * need it again and again: a long stream runs while its pair is looked up
 * in the daemon's live pairing table, then every byte of both directions is
 * checked and the counters must show all of it redirected and none passed.
 */
import type { ExecutionContext } from 'ava';
import { formatEndpoint, type Connection } from '../../src/kernel/bpf-layout';
import { readPairs } from '../../src/kernel/pairs';
import { parseIp } from '../../src/config/ip-prefix';
import type { RunningDaemon } from './daemon';
import { assertChainIntegrity, ISTIO } from './mesh';
import type { NetnsEndpoint } from './netns';
import { withStreamTo, type LongStreamOptions } from './long-stream';
import { assertIntegrity, runClient, withHeldClient, type ClientOptions, type ServerHandle } from './traffic';
import { waitFor } from './wait-for';

export type Counters = Record<string, bigint>;

/** What the assertions read of a daemon: its pins (through status) and its live pairs. */
export type Observed = Pick<RunningDaemon, 'pinRoot' | 'status'>;

/** Where the mesh tests' app B listens. */
export const APP_PORT = 8080;
const MiB = 1024 * 1024;

export const counters = (d: Observed): Counters =>
  Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));

export const delta = (a: Counters, b: Counters): Counters => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0n)]));

/** The paired connections whose client connected to `host:port`. */
export function livePairsTo(d: Observed, host: string, port: number): Connection[] {
  const dst = formatEndpoint(parseIp(host), port);
  return readPairs(d.pinRoot).filter((c) => c.state === 'paired' && formatEndpoint(c.dst.ip, c.dst.port) === dst);
}

/**
 * Streams from `from` (its placement; `host` is where it connects) to the
 * echo server `server` until the connection shows up paired in the live
 * table, then finishes and checks it byte for byte. Returns the live pair.
 * The server must not have served other connections (its reports are
 * matched whole).
 */
export async function assertAccelerated(t: ExecutionContext, d: Observed, server: ServerHandle, from: LongStreamOptions, label: string): Promise<Connection> {
  const before = counters(d);
  return withStreamTo(server, from, async (stream) => {
    const [pair] = await waitFor(`${label}: a live pair to ${from.host}:${server.port}`, () => {
      const live = livePairsTo(d, from.host, server.port);
      return live.length > 0 && live;
    });
    const { client, server: reports } = await stream.finish();
    assertIntegrity(t, client, reports, { echo: true });
    const moved = delta(before, counters(d));
    const sent = BigInt(client.conns[0].bytesOut);
    t.true(sent > 0n, `${label}: the stream sent something`);
    t.is(moved.msgs_passed, 0n, `${label}: nothing went over plain TCP`);
    t.is(moved.bytes_redirected, 2n * sent, `${label}: every byte of both directions redirected`);
    return pair;
  });
}

/**
 * A finished exchange that must have stayed plain TCP: no socket inserted,
 * nothing redirected, every byte intact. Returns the counters it moved.
 */
export async function assertPlain(t: ExecutionContext, d: Observed, server: ServerHandle, from: Omit<ClientOptions, 'port' | 'bytes'>, label: string): Promise<Counters> {
  const before = counters(d);
  const bytes = 256 * 1024;
  const client = await runClient({ ...from, port: server.port, bytes });
  assertIntegrity(t, client, await server.results(1), { bytesPerConn: bytes, echo: true });
  const moved = delta(before, counters(d));
  t.is(moved.sockets_inserted, 0n, `${label}: no socket inserted`);
  t.is(moved.bytes_redirected, 0n, `${label}: nothing redirected`);
  return moved;
}

/**
 * app `from` -> sidecar -> sidecar -> app B (listening on APP_PORT in `to`),
 * one slow connection: while it runs, all three hops must be paired live;
 * then every byte is checked (by content: app B sees the sidecar's 127.0.0.6).
 */
export async function assertChainAccelerated(t: ExecutionContext, d: Observed, cgroup: string, from: NetnsEndpoint, to: NetnsEndpoint, server: ServerHandle, label: string): Promise<void> {
  const before = counters(d);
  const bytes = MiB;
  // Held open through the chain until released: its live pairs are looked at, never a race with a stream's end.
  const client = await withHeldClient({ host: to.ipv4, port: APP_PORT, bytes, cgroup, netns: from.ns, seed: label }, async (held) => {
    await held.holding();
    const hops = await waitFor(`${label}: three live pairs (one per hop)`, () => {
      const live = livePairsTo(d, to.ipv4, APP_PORT);
      return live.length === 3 && live;
    });
    t.deepEqual(
      hops.map((c) => `${formatEndpoint(c.server.ip, c.server.port)}`).sort(),
      [`127.0.0.1:${ISTIO.outbound}`, `${to.ipv4}:${APP_PORT}`, `${to.ipv4}:${ISTIO.inbound}`].sort(),
      `${label}: hop 1 into sidecar A's outbound port, hop 2 into sidecar B's inbound port, hop 3 into app B`,
    );
    return held.release();
  });
  // The server may have served earlier chains: wait for this connection's own report.
  const mine = await waitFor(`${label}: app B's report of the connection`, async () => {
    const reports = (await server.results(1)).filter((s) => s.sha256In === client.conns[0].sha256Out);
    return reports.length > 0 && reports;
  });
  assertChainIntegrity(t, client, mine, bytes);
  const moved = delta(before, counters(d));
  t.is(moved.sockets_inserted, 6n, `${label}: both ends of three hops inserted`);
  t.is(moved.msgs_passed, 0n, `${label}: nothing went over plain TCP`);
  t.is(moved.bytes_redirected, BigInt(3 * 2 * bytes), `${label}: every hop, both directions, every byte`);
}
