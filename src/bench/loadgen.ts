/**
 * Drives build/native/loadgen (scripts/bench/loadgen.c): one server and one
 * client process per run (or two runs taking turns on one CPU), placed by
 * the caller, and turns their JSON lines into integrity problems and metrics.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchIntegrityError, EnvironmentError } from '../common/errors';
import type { JsonLine, JsonProcess, Placement, ProcessGroup } from './processes';

export const LOADGEN_BINARY = path.resolve(__dirname, '..', '..', '..', 'build', 'native', 'loadgen');

export type Mode = 'rr' | 'stream' | 'connrate' | 'crr' | 'mixed';

/** Modes whose client sends requests one at a time and reports per-request latency (rr's result shape). */
export type RequestMode = 'rr' | 'crr' | 'mixed';

export function isRequestMode(mode: Mode): mode is RequestMode {
  return mode === 'rr' || mode === 'crr' || mode === 'mixed';
}

/** A TCP host (listen: bind address; client: where to connect) or a Unix socket path. */
export type Address = { readonly tcp: string } | { readonly unix: string };

/**
 * How much of a stream the server compares with the pattern: every byte
 * (the integrity gate), or samples that still catch any lost, repeated or
 * reordered block (measured runs: a full compare on the CPU that also moves
 * the bytes would cost both sides alike and compress the ratio).
 */
export type StreamVerify = 'full' | 'sampled';

export interface RunPlan {
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly verify: StreamVerify;
}

export interface RunSpec extends RunPlan {
  readonly mode: Mode;
  /** rr, crr, mixed: message size; stream: write size; connrate: unused. */
  readonly size: number;
  /** A fixed TCP port for the server (reused run after run); absent: any free one. */
  readonly port?: number;
  /** connrate, crr, mixed: stop after this many connections even before the duration is up. */
  readonly maxConns?: number;
  /** rr, crr, mixed, stream: go on past the duration until this many requests or writes were sent. */
  readonly minSends?: number;
  readonly server: { readonly listen: Address; readonly placement: Placement };
  readonly client: { readonly connect: Address; readonly placement: Placement };
}

/** rr (one connection), crr (a connection per request), mixed (both, alternately). */
export interface RrClientResult {
  readonly mode: RequestMode;
  readonly size: number;
  readonly messages: number;
  /** Connections the client opened (rr: 1; mixed: the persistent one and the fresh ones). */
  readonly connections: number;
  readonly transactions: number;
  readonly elapsedNs: number;
  readonly latencyNs: { min: number; p50: number; p90: number; p99: number; p999: number; max: number; mean: number; stddev: number };
  /** [from ns, to ns, count] buckets, 4 per power of two. */
  readonly histogram: readonly [number, number, number][];
  readonly integrity: { ok: boolean; checkedBytes: number; firstBadMessage: number; problem?: string };
}

export interface CpuReport {
  readonly userSec: number;
  readonly sysSec: number;
  /** Busy time of every CPU over the window, from /proc/stat (user+nice+system+irq+softirq). */
  readonly busySecByCpu: readonly number[];
}

export interface StreamClientResult {
  readonly mode: 'stream';
  readonly size: number;
  readonly bytesSent: number;
  readonly writes: number;
  readonly windowBytes: number;
  readonly windowNs: number;
  /** How the server's side ended: "eof" when it had read everything, else what the client saw. */
  readonly serverClose: string;
  readonly cpu: CpuReport;
}

export interface ConnrateClientResult {
  readonly mode: 'connrate';
  readonly connections: number;
  readonly windowConnections: number;
  readonly windowNs: number;
  readonly integrity: { ok: boolean; badCloses: number };
}

export type ClientResult = RrClientResult | StreamClientResult | ConnrateClientResult;

export interface ServerConnReport {
  readonly mode: 'rr' | 'stream';
  readonly messages?: number;
  readonly badMessages?: number;
  readonly bytesIn?: number;
  readonly reads?: number;
  readonly firstBadOffset?: number;
  readonly verify?: StreamVerify;
  readonly cpu?: CpuReport;
}

export interface ServerSummary {
  readonly accepted: number;
  /** crr, mixed: requests answered, and requests that differed from the pattern. */
  readonly messages?: number;
  readonly badMessages?: number;
  readonly failures: number;
  readonly spuriousEagain: number;
}

export interface LoadgenRun {
  readonly client: ClientResult;
  /** Blocking recv() calls that returned EAGAIN (see recv_blocking in loadgen.c), both processes. */
  readonly spuriousEagain: number;
  /** The server's report on the (one) connection of rr and stream; absent for the connection-per-request modes. */
  readonly serverConn?: ServerConnReport;
  readonly serverSummary: ServerSummary;
  /** Runs that took turns (runLoadgenTurns): how often this one handed over, and the time it waited for its partner. */
  readonly turns?: { readonly passes: number; readonly pausedNs: number };
}

const START_TIMEOUT_MS = 10_000;
const REPORT_TIMEOUT_MS = 15_000;
/** Beyond the planned run time; loadgen's own watchdog fires first. */
const CLIENT_GRACE_MS = 30_000;

export function checkLoadgenBuilt(): void {
  if (!fs.existsSync(LOADGEN_BINARY)) {
    throw new EnvironmentError(`the load generator ${LOADGEN_BINARY} is not built`, {
      hint: 'build it with: bash scripts/setup.sh (or bash scripts/build-native.sh)',
    });
  }
}

function addressArgs(address: Address): string[] {
  return 'unix' in address ? ['--unix', address.unix] : ['--host', address.tcp];
}

type Server = { readonly proc: JsonProcess; readonly port: number };

async function startServer(group: ProcessGroup, spec: RunSpec, label: string): Promise<Server> {
  const proc = group.spawn(
    `loadgen server (${label})`,
    [
      LOADGEN_BINARY, 'server', '--mode', spec.mode, '--size', String(spec.size), '--verify', spec.verify, ...addressArgs(spec.server.listen),
      ...(spec.port !== undefined && 'tcp' in spec.server.listen ? ['--port', String(spec.port)] : []),
    ],
    spec.server.placement,
  );
  try {
    const listening = await proc.waitFor((l) => l.event === 'listening', START_TIMEOUT_MS, 'it to listen');
    return { proc, port: Number(listening.port) };
  } catch (err) {
    await proc.kill();
    throw err;
  }
}

function startClient(group: ProcessGroup, spec: RunSpec, server: Server, label: string, extra: readonly string[] = []): JsonProcess {
  return group.spawn(
    `loadgen client (${label})`,
    [
      LOADGEN_BINARY, 'client', '--mode', spec.mode, '--size', String(spec.size), ...addressArgs(spec.client.connect),
      ...('tcp' in spec.client.connect ? ['--port', String(server.port)] : []),
      '--duration-ms', String(spec.durationMs), '--warmup-ms', String(spec.warmupMs),
      ...(spec.maxConns !== undefined ? ['--max-conns', String(spec.maxConns)] : []),
      ...(spec.minSends !== undefined ? ['--min-sends', String(spec.minSends)] : []),
      ...extra,
    ],
    spec.client.placement,
  );
}

/** Waits for the client's result (within `runMs` and a grace), then for the server's reports; ends both. */
async function finish(client: JsonProcess, server: Server, spec: RunSpec, label: string, runMs: number): Promise<LoadgenRun> {
  try {
    let result: JsonLine;
    try {
      result = await client.waitFor((l) => l.event === 'result', runMs + CLIENT_GRACE_MS, 'its result');
    } catch (err) {
      // Bytes that never arrive are an integrity failure, not a crash.
      const stall = client.lines.find((l) => l.event === 'error' && String(l.message).startsWith('watchdog'));
      if (stall) throw new BenchIntegrityError(`${label}: ${String(stall.message)} (sent data was never delivered)`);
      throw err;
    } finally {
      await client.kill();
    }
    const clientQuirks = Number(client.lines.find((l) => l.event === 'quirks')?.spuriousEagain ?? 0);
    const serverConn = spec.mode !== 'rr' && spec.mode !== 'stream'
      ? undefined
      : ((await server.proc.waitFor((l) => l.event === 'conn', REPORT_TIMEOUT_MS, 'its connection report')) as unknown as ServerConnReport);
    server.proc.signal('SIGTERM');
    const summary = await server.proc.waitFor((l) => l.event === 'summary', REPORT_TIMEOUT_MS, 'its summary');
    const serverSummary = summary as unknown as ServerSummary;
    const turns = client.lines.find((l) => l.event === 'turns');
    return {
      client: result as unknown as ClientResult,
      serverConn,
      serverSummary,
      spuriousEagain: clientQuirks + serverSummary.spuriousEagain,
      ...(turns ? { turns: { passes: Number(turns.passes), pausedNs: Number(turns.pausedNs) } } : {}),
    };
  } finally {
    await server.proc.kill();
  }
}

/** Starts the server, runs the client to the end, collects both sides' reports, ends the server. */
export async function runLoadgen(group: ProcessGroup, spec: RunSpec, label: string): Promise<LoadgenRun> {
  const server = await startServer(group, spec, label);
  let client: JsonProcess;
  try {
    client = startClient(group, spec, server, label);
  } catch (err) {
    await server.proc.kill();
    throw err;
  }
  return finish(client, server, spec, label, spec.warmupMs + spec.durationMs);
}

/** Requests (rr, crr, mixed) or connections (connrate) per turn when two runs take turns: a few milliseconds at the rates of this kind of machine. */
export const TURN_EVERY = 64;

/** What a client counts toward its turns: requests, or connections for connrate. */
export function turnUnits(run: LoadgenRun): number {
  const c = run.client;
  return c.mode === 'connrate' ? c.connections : c.mode === 'stream' ? 0 : c.messages;
}

/**
 * Two runs that take turns on their CPU (loadgen --turn): each with its own
 * server, their clients run alternately TURN_EVERY requests or connections
 * at a time, `first` first, and each reports only its own time. Whatever the
 * machine does for a while then falls on both alike, so their ratio is
 * measured within about 1% where two runs one after the other differ by
 * ±20% on a shared VM. Both must be placed on the same CPUs and use
 * different server addresses or ports.
 */
export async function runLoadgenTurns(group: ProcessGroup, specs: readonly [RunSpec, RunSpec], labels: readonly [string, string]): Promise<[LoadgenRun, LoadgenRun]> {
  // loadgen refuses too, but its partner would wait for it until its watchdog.
  if (specs.some((s) => s.mode === 'stream')) throw new RangeError('loadgen stream clients do not take turns');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-turns-'));
  const servers: Server[] = [];
  const clients: JsonProcess[] = [];
  try {
    for (const [i, spec] of specs.entries()) servers.push(await startServer(group, spec, labels[i]!));
    for (const [i, spec] of specs.entries()) {
      clients.push(startClient(group, spec, servers[i]!, labels[i]!, ['--turn', dir, '--turn-role', i === 0 ? 'first' : 'second', '--turn-every', String(TURN_EVERY)]));
    }
    // Each run's wall time is its own plus its partner's.
    const runMs = specs.reduce((sum, s) => sum + s.warmupMs + s.durationMs, 0);
    const runs = await Promise.allSettled(specs.map((spec, i) => finish(clients[i]!, servers[i]!, spec, labels[i]!, runMs)));
    const failed = runs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const done = runs.map((r) => (r as PromiseFulfilledResult<LoadgenRun>).value) as [LoadgenRun, LoadgenRun];
    // A run long enough to hand over that never did was not measured alongside the other.
    const alone = done.findIndex((r) => turnUnits(r) >= 2 * TURN_EVERY && !r.turns?.passes);
    if (alone >= 0) throw new BenchIntegrityError(`${labels[alone]}: the two runs did not take turns (${turnUnits(done[alone]!)} units, no hand-over), so their ratio would not be a paired one`);
    return done;
  } finally {
    await Promise.all([...clients, ...servers.map((s) => s.proc)].map((p) => p.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Every way the two sides disagree about the bytes, as sentences; empty when intact. */
export function integrityProblems(run: LoadgenRun, verify: StreamVerify): string[] {
  const problems: string[] = [];
  const { client, serverConn, serverSummary } = run;
  switch (client.mode) {
    case 'rr':
      if (!client.integrity.ok) problems.push(`the client received a wrong response to message ${client.integrity.firstBadMessage}`);
      if ((serverConn?.badMessages ?? 0) > 0) problems.push('the server received a request that differs from what the client sent');
      if (serverConn?.messages !== client.messages) {
        problems.push(`the client completed ${client.messages} messages, the server answered ${serverConn?.messages}`);
      }
      break;
    case 'crr':
    case 'mixed':
      if (!client.integrity.ok) {
        problems.push(`message ${client.integrity.firstBadMessage}: ${client.integrity.problem || 'wrong response'}`);
      }
      if ((serverSummary.badMessages ?? 0) > 0) problems.push(`the server received ${serverSummary.badMessages} requests that differ from what the client sent`);
      if (serverSummary.messages !== client.messages) {
        problems.push(`the client completed ${client.messages} messages, the server answered ${serverSummary.messages}`);
      }
      if (serverSummary.accepted !== client.connections) {
        problems.push(`the client made ${client.connections} connections, the server accepted ${serverSummary.accepted}`);
      }
      break;
    case 'stream':
      if (client.serverClose !== 'eof') problems.push(`the connection did not end in a clean EOF: ${client.serverClose}`);
      if (serverConn?.firstBadOffset !== -1) problems.push(`the server read a wrong byte at stream offset ${serverConn?.firstBadOffset}`);
      if (serverConn?.verify !== verify) problems.push(`the server compared ${serverConn?.verify ?? 'nothing'}, not ${verify}`);
      if (serverConn?.bytesIn !== client.bytesSent) {
        problems.push(`the client sent ${client.bytesSent} bytes, the server received ${serverConn?.bytesIn}`);
      }
      break;
    case 'connrate':
      if (!client.integrity.ok) problems.push(`${client.integrity.badCloses} connections did not end in a clean EOF`);
      if (serverSummary.accepted !== client.connections) {
        problems.push(`the client made ${client.connections} connections, the server accepted ${serverSummary.accepted}`);
      }
      break;
  }
  if (serverSummary.failures > 0) problems.push(`the server counted ${serverSummary.failures} failed connections`);
  return problems;
}

/** Payload bytes the run moved, both directions: what the redirect counters must account for. */
export function payloadBytes(run: LoadgenRun): number {
  switch (run.client.mode) {
    case 'rr':
    case 'crr':
    case 'mixed':
      return 2 * run.client.messages * run.client.size;
    case 'stream':
      return run.client.bytesSent;
    case 'connrate':
      return 0;
  }
}

/** The CPUs in a taskset list such as "0,2-3". */
export function cpuList(list: string): number[] {
  return list.split(',').flatMap((part) => {
    const [from, to] = part.split('-').map(Number);
    if (!Number.isInteger(from) || (to !== undefined && !Number.isInteger(to))) throw new RangeError(`bad CPU list "${list}"`);
    return to === undefined ? [from!] : Array.from({ length: to - from! + 1 }, (_, i) => from! + i);
  });
}

/** The metrics of one run, by name (see METRICS in results.ts). */
export function runMetrics(run: LoadgenRun, cpusUsed: readonly number[]): Record<string, number> {
  const { client } = run;
  switch (client.mode) {
    case 'rr':
    case 'crr':
    case 'mixed':
      return {
        p50Us: client.latencyNs.p50 / 1e3,
        p99Us: client.latencyNs.p99 / 1e3,
        meanUs: client.latencyNs.mean / 1e3,
        tps: client.transactions / (client.elapsedNs / 1e9),
      };
    case 'stream': {
      const gb = client.windowBytes / 1e9;
      const busy = cpusUsed.reduce((sum, cpu) => sum + (client.cpu.busySecByCpu[cpu] ?? 0), 0);
      const server = run.serverConn;
      return {
        gbps: (client.windowBytes * 8) / client.windowNs,
        cpuSecPerGB: busy / gb,
        clientCpuSecPerGB: (client.cpu.userSec + client.cpu.sysSec) / gb,
        serverBytesPerRead: server?.reads ? (server.bytesIn ?? 0) / server.reads : 0,
      };
    }
    case 'connrate':
      return { connPerSec: client.windowConnections / (client.windowNs / 1e9) };
  }
}
