/**
 * The bench orchestrator: builds the paths and the accelerated side, proves
 * on every path that acceleration really happens and keeps the bytes intact
 * (the integrity gate), then measures every case in interleaved rounds
 * (plain, accelerated, Unix socket; next case; next round), checking the
 * bytes and the redirect counters of every single run, and summarizes.
 * Everything it creates is removed again, whatever happens.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Stats, StatName } from '../kernel/bpf-layout';
import { attemptEach } from '../common/cleanup';
import { BenchIntegrityError, PrivilegeError, UsageError } from '../common/errors';
import type { MeshName } from '../daemon/mesh';
import { checkLoadgenBuilt, cpuList, integrityProblems, payloadBytes, runLoadgen, runLoadgenTurns, runMetrics, TURN_EVERY, type LoadgenRun, type RunPlan, type RunSpec } from './loadgen';
import { caseId, type BenchOptions, type CaseSpec } from './options';
import { deriveCalibration } from './calibration';
import { chooseFreePorts } from './ports';
import { settle, tcpSocketsAllocated } from './settle';
import { removeDeadRuns } from './leftovers';
import type { BenchPath, PreparedPath, TcpSide } from './paths';
import type { Placement, ProcessGroup } from './processes';
import type { Progress } from './progress';
import { evaluateGoals, METRICS, RESULTS_SCHEMA_VERSION, TCP_SIDES, type AdaptiveDecisionReport, type AdaptiveReport, type BenchResults, type CaseResult, type Side, type SockperfCheck } from './results';
import { newRunId, ownChildren, recordPath, RunRecorder } from './run-record';
import { scratchLocations, startAcceleratedSide, type AcceleratedSide } from './scratch';
import { checkSockperfInstalled, runSockperf } from './sockperf';
import { summarizeRatios, summarizeRounds, type RatioSummary, type RoundSummary } from './stats';

export interface BenchIo {
  readonly progress: (totalSteps: number) => Progress;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly group: ProcessGroup;
  readonly version: string;
}

type Delta = Record<StatName, bigint>;

function delta(before: Stats, after: Stats): Delta {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k as StatName] - before[k as StatName]])) as Delta;
}

/**
 * What the daemon's counters say about a run that should (accelerated) or
 * should not (plain) have been redirected across `hops` connections (each
 * one socket pair, each carrying every payload byte); empty when they agree.
 */
export function accelerationProblems(side: Side, run: LoadgenRun, d: Delta, hops: number): string[] {
  // Adaptive runs may leave connections plain by design: their bytes are checked, their counters reported.
  if (side === 'unix' || side === 'adaptive') return [];
  if (side === 'plain') {
    return d.sockets_inserted > 0n || d.bytes_redirected > 0n
      ? [`the plain run was accelerated (${d.sockets_inserted} sockets inserted, ${d.bytes_redirected} bytes redirected)`]
      : [];
  }
  const counts = `counters: sockets_inserted +${d.sockets_inserted}, bytes_redirected +${d.bytes_redirected}, bytes_passed +${d.bytes_passed}, pair_fallback +${d.pair_fallback}, insert_fail_full +${d.insert_fail_full}, insert_fail_other +${d.insert_fail_other}, skipped_port +${d.skipped_port}, skipped_no_listener +${d.skipped_no_listener}, skipped_not_local +${d.skipped_not_local}`;
  if (run.client.mode === 'connrate') {
    const expected = 2n * BigInt(hops) * BigInt(run.client.connections);
    return d.sockets_inserted < expected
      ? [`only ${d.sockets_inserted} of ${expected} sockets entered the sockhash: connections were set up as plain TCP (${counts})`]
      : [];
  }
  const payload = BigInt(payloadBytes(run)) * BigInt(hops);
  const problems: string[] = [];
  if (run.client.mode === 'crr' || run.client.mode === 'mixed') {
    const expected = 2n * BigInt(hops) * BigInt(run.client.connections);
    if (d.sockets_inserted < expected) problems.push(`only ${d.sockets_inserted} of ${expected} sockets of the ${run.client.connections} connections were paired`);
  } else if (d.sockets_inserted < 2n * BigInt(hops)) {
    problems.push(hops === 1 ? 'the connection was never paired' : `only ${d.sockets_inserted} of ${2 * hops} sockets of the ${hops} connections were paired`);
  }
  if (d.bytes_redirected < payload) problems.push(`only ${d.bytes_redirected} of ${payload} payload bytes${hops === 1 ? '' : ` (×${hops} connections)`} were redirected`);
  if (d.bytes_passed > 0n) problems.push(`${d.bytes_passed} bytes went over plain TCP`);
  return problems.length ? [`the accelerated run fell back to plain TCP: ${problems.join(', ')} (${counts})`] : [];
}

/**
 * A connection whose client wrote before its server end had paired falls
 * back to plain TCP as a whole, by design, with every byte exact: a relay
 * that writes upstream right after connect can do this when the handshake's
 * last ACK is still queued (through a veth, on a busy CPU). The run then
 * measured plain TCP, so it is measured again, up to PAIRING_ATTEMPTS
 * times; a fallback with any other cause (a full map, a refused insert, a
 * policy) is not retried. A fallback that repeats (a server outside the
 * cgroup) still ends the bench.
 */
export function pairingRaced(d: Pick<Delta, 'pair_fallback' | 'insert_fail_full' | 'insert_fail_other' | 'skipped_policy'>): boolean {
  return d.pair_fallback > 0n && d.insert_fail_full === 0n && d.insert_fail_other === 0n && d.skipped_policy === 0n;
}

const PAIRING_ATTEMPTS = 3;

/** An accelerated run that lost a pairing race (see pairingRaced): measured again. */
class PairingRaceError extends BenchIntegrityError {}

function sidesOf(c: Pick<CaseSpec, 'kind' | 'path'>): Side[] {
  // The Unix socket limit line does not depend on the TCP path: measured once, on loopback.
  return (c.kind === 'rr' || c.kind === 'stream') && c.path.name === 'loopback' ? [...TCP_SIDES, 'unix'] : [...TCP_SIDES];
}

/** The adaptive side runs where the accelerated one does (its cgroup, its endpoints): only the policy switch differs. */
function tcpSide(side: Exclude<Side, 'unix'>): TcpSide {
  return side === 'plain' ? 'plain' : 'accelerated';
}

function sizeLabel(bytes: number): string {
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function caseLabel(c: CaseSpec): string {
  return `${c.kind} ${c.path.name}${c.size === null ? '' : ` ${sizeLabel(c.size)}`} ${c.pinning}`;
}

interface Context {
  readonly opts: BenchOptions;
  readonly io: BenchIo;
  readonly accelerated: AcceleratedSide;
  readonly prepared: ReadonlyMap<string, PreparedPath>;
  readonly unixDir: string;
  unixCount: number;
  readonly spuriousEagain: Record<Side, number>;
  /** Time spent after each side's runs waiting for their sockets to be freed, and runs after which the wait timed out. */
  readonly settling: Record<Side, { waitedMs: number; unsettled: number }>;
  /** The fixed server port of each case, by case id: its adaptive-off and adaptive runs (one service for the daemon). */
  readonly ports: ReadonlyMap<string, number>;
  /** The plain runs' own port per case, so that a plain run can take turns with an adaptive one. */
  readonly plainPorts: ReadonlyMap<string, number>;
  /** Runs measured again after a lost pairing race, by label (see pairingRaced). */
  readonly pairingRetries: string[];
}

function cpusFor(opts: BenchOptions, c: Pick<CaseSpec, 'pinning'>): { server: string; client: string } {
  return c.pinning === 'same-cpu' || opts.cpus.crossCpu === null
    ? { server: opts.cpus.sameCpu, client: opts.cpus.sameCpu }
    : opts.cpus.crossCpu;
}

/** A run's plan; `maxConns` ends a connection-per-request warm-up early. */
type Plan = RunPlan & { readonly maxConns?: number };

function runSpec(ctx: Context, c: CaseSpec, side: Side, plan: Plan): RunSpec {
  const cpus = cpusFor(ctx.opts, c);
  const cgroup = side === 'accelerated' || side === 'adaptive' ? ctx.accelerated.cgroup : undefined;
  const place = (netns: string | undefined, cpu: string): Placement => ({
    ...(cgroup ? { cgroup } : {}),
    ...(netns ? { netns } : {}),
    cpus: cpu,
  });
  const common = { mode: c.kind, size: c.size ?? 1, ...plan };
  if (side === 'unix') {
    const socket = path.join(ctx.unixDir, `s${ctx.unixCount++}.sock`);
    return { ...common, server: { listen: { unix: socket }, placement: place(undefined, cpus.server) }, client: { connect: { unix: socket }, placement: place(undefined, cpus.client) } };
  }
  const { server, client } = ctx.prepared.get(c.path.name)!.endpoints[tcpSide(side)];
  const port = (side === 'plain' ? ctx.plainPorts : ctx.ports).get(caseId(c));
  return {
    ...common,
    ...(port !== undefined ? { port } : {}),
    server: { listen: { tcp: server.host }, placement: place(server.netns, cpus.server) },
    client: { connect: { tcp: client.host }, placement: place(client.netns, cpus.client) },
  };
}

type Measured = { readonly run: LoadgenRun; readonly metrics: Record<string, number>; readonly delta: Delta };

/**
 * The runs of `sides` of a case, launched together by `launch` (one run, or
 * two taking turns), their bytes and counters checked; throws
 * BenchIntegrityError on any doubt. `delta` is the daemon's counters over all
 * of them.
 */
async function measure(ctx: Context, c: CaseSpec, sides: readonly Side[], plan: Plan, launch: (specs: RunSpec[], labels: string[]) => Promise<readonly LoadgenRun[]>): Promise<Measured[]> {
  const labels = sides.map((side) => `${caseLabel(c)} ${side}`);
  const specs = sides.map((side) => runSpec(ctx, c, side, plan));
  const cpus = cpusFor(ctx.opts, c);
  for (const side of sides) if (side !== 'unix') await ctx.prepared.get(c.path.name)!.beforeRun?.(tcpSide(side), cpus);
  // Plain runs are outside the daemon's cgroup: the switch only matters to the other two.
  if (sides.some((side) => side === 'accelerated' || side === 'adaptive')) ctx.accelerated.setAdaptive(sides.includes('adaptive'));
  const allocated = tcpSocketsAllocated();
  const before = ctx.accelerated.counters();
  const runs = await launch(specs, labels);
  const d = delta(before, ctx.accelerated.counters());
  // The next run must not pay for these runs' sockets (see settle.ts).
  const settled = await settle(allocated);
  const used = [...new Set([...cpuList(cpus.server), ...cpuList(cpus.client)])];
  return sides.map((side, i) => {
    const run = runs[i]!;
    ctx.settling[side].waitedMs += settled.waitedMs / sides.length;
    if (!settled.settled) ctx.settling[side].unsettled++;
    ctx.spuriousEagain[side] += run.spuriousEagain;
    const hops = side === 'unix' ? 1 : c.path.hops;
    // The counters cannot tell two runs apart: only a run alone is held to them.
    const integrity = integrityProblems(run, plan.verify);
    if (integrity.length > 0) throw new BenchIntegrityError(`${labels[i]}: ${integrity.join('; ')}`);
    const fellBack = sides.length === 1 ? accelerationProblems(side, run, d, hops) : [];
    if (fellBack.length > 0) throw new (pairingRaced(d) ? PairingRaceError : BenchIntegrityError)(`${labels[i]}: ${fellBack.join('; ')}`);
    const listen = specs[i]!.server.listen;
    if ('unix' in listen) fs.rmSync(listen.unix, { force: true });
    return { run, metrics: runMetrics(run, used), delta: d };
  });
}

/** One run of one side; measured again after a lost pairing race (see pairingRaced). */
async function measureOnce(ctx: Context, c: CaseSpec, side: Side, plan: Plan): Promise<Measured> {
  for (let attempt = 1; ; attempt++) {
    try {
      const [measured] = await measure(ctx, c, [side], plan, async ([spec], [label]) => [await runLoadgen(ctx.io.group, spec!, label!)]);
      return measured!;
    } catch (err) {
      if (!(err instanceof PairingRaceError) || attempt === PAIRING_ATTEMPTS) throw err;
      ctx.pairingRetries.push(`${caseLabel(c)} ${side}`);
    }
  }
}

/**
 * Plain and adaptive measured together: the two runs take turns on their CPU
 * (runLoadgenTurns), `first` first, so that their ratio is a paired one.
 * For the cases where adaptive on must match plain within a few percent
 * (a connection per request, the setup rate, the mixed service); separate
 * runs of those spread ±20% per round on a shared VM.
 */
async function measurePair(ctx: Context, c: CaseSpec, plan: Plan, first: 'plain' | 'adaptive'): Promise<[Side, Measured][]> {
  const sides = first === 'plain' ? (['plain', 'adaptive'] as const) : (['adaptive', 'plain'] as const);
  const measured = await measure(ctx, c, sides, plan, (specs, labels) => runLoadgenTurns(ctx.io.group, [specs[0]!, specs[1]!], [labels[0]!, labels[1]!]));
  return sides.map((side, i) => [side, measured[i]!]);
}

/** The kinds whose plain and adaptive runs take turns (see measurePair). */
export function pairedKind(kind: CaseSpec['kind']): boolean {
  return kind === 'crr' || kind === 'connrate' || kind === 'mixed';
}

/** One run of a round: a side alone, or (pair) plain and adaptive taking turns, `side` first. */
export type RoundRun = { readonly pair: false; readonly side: Side } | { readonly pair: true; readonly side: 'plain' | 'adaptive' };

/**
 * The runs of round `round` of a case, in order: A B C, then C B A, so that
 * whatever the first run leaves behind (TIME_WAIT sockets, psocks still being
 * freed, a warm cache) favours no side; plain and adaptive of a paired kind
 * make one run, at the place of whichever of them comes first.
 */
export function roundRuns(c: Pick<CaseSpec, 'kind' | 'path'>, round: number): RoundRun[] {
  const sides = round % 2 === 1 ? sidesOf(c) : [...sidesOf(c)].reverse();
  if (!pairedKind(c.kind)) return sides.map((side) => ({ pair: false, side }));
  const first = sides.find((s): s is 'plain' | 'adaptive' => s === 'plain' || s === 'adaptive')!;
  return sides.flatMap((side): RoundRun[] => (side === first ? [{ pair: true, side }] : side === 'plain' || side === 'adaptive' ? [] : [{ pair: false, side }]));
}

/** How long the learner may take to decide once the warm-up's connections are closed (it reads every adaptiveIntervalMs, 250 ms by default). */
const DECISION_WAIT_MS = 3_000;
const DECISION_POLL_MS = 50;

function decisionsFor(ctx: Context, port: number): AdaptiveDecisionReport[] {
  return [...ctx.accelerated.decisions()]
    .filter(([, { key }]) => key.port === port)
    .map(([service, { decision: d }]) => ({
      service,
      verdict: d.verdict,
      reason: d.reason,
      explorePermille: d.explorePermille,
      savedNsPerConn: d.savedNsPerConn,
      evidenceConns: d.evidenceConns,
    }));
}

/**
 * Before a case's first adaptive run: traffic of the case on the adaptive
 * side (at most opts.adaptiveWarmup: 2 s or 200 connections), then a wait
 * for the daemon's learner to decide on the case's service. No decision
 * within the deadline is reported, not fatal: the runs then show what the
 * daemon does without one.
 */
async function warmUp(ctx: Context, c: CaseSpec): Promise<Pick<AdaptiveReport, 'warmup' | 'decisions'>> {
  const { ms, connections } = ctx.opts.adaptiveWarmup;
  const started = Date.now();
  const { run } = await measureOnce(ctx, c, 'adaptive', { warmupMs: 0, durationMs: ms, verify: 'sampled', maxConns: connections });
  const elapsedMs = Date.now() - started;
  const port = ctx.ports.get(caseId(c))!;
  const waitStart = Date.now();
  let decisions = decisionsFor(ctx, port);
  while (!decisions.some((d) => d.reason !== 'none') && Date.now() - waitStart < DECISION_WAIT_MS) {
    await sleep(DECISION_POLL_MS);
    decisions = decisionsFor(ctx, port);
  }
  const conns = 'connections' in run.client ? run.client.connections : 1;
  return { warmup: { connections: conns, elapsedMs, decisionWaitMs: Date.now() - waitStart }, decisions };
}

const MB = 1e6;

/** Before any measurement: on every path, accelerated bytes arrive intact and the counters prove the redirect. */
async function integrityGate(ctx: Context, step: (label: string) => void): Promise<BenchResults['integrityGate']> {
  const gate: { path: string; checks: string[] }[] = [];
  const plan: RunPlan = { warmupMs: 0, durationMs: 150, verify: 'full' };
  for (const p of ctx.opts.paths) {
    const checks: string[] = [];
    for (const [kind, size] of [['rr', 64], ['stream', 65536]] as const) {
      const c: CaseSpec = { kind, path: p, size, pinning: 'same-cpu' };
      step(`integrity gate: ${caseLabel(c)} accelerated`);
      const { run, delta: d } = await measureOnce(ctx, c, 'accelerated', plan);
      const across = p.hops === 1 ? '' : ` across ${p.hops} connections`;
      checks.push(
        run.client.mode === 'rr'
          ? `rr ${size} B: ${run.client.messages} request/response pairs compared byte for byte; ${d.sockets_inserted} sockets paired; ${d.bytes_redirected} bytes redirected${across}, 0 over plain TCP`
          : `stream ${sizeLabel(size)}: ${(payloadBytes(run) / MB).toFixed(1)} MB compared at the server; ${(Number(d.bytes_redirected) / MB).toFixed(1)} MB redirected${across}, 0 over plain TCP`,
      );
    }
    step(`integrity gate: rr ${p.name} plain`);
    await measureOnce(ctx, { kind: 'rr', path: p, size: 64, pinning: 'same-cpu' }, 'plain', plan);
    checks.push('plain run: no socket inserted, no byte redirected');
    gate.push({ path: p.name, checks });
  }
  return gate;
}

type Samples = Map<string, Partial<Record<Side, Record<string, number[]>>>>;

function record(samples: Samples, c: CaseSpec, side: Side, metrics: Record<string, number>): void {
  const id = caseId(c);
  const bySide = samples.get(id) ?? {};
  const byMetric = (bySide[side] ??= {});
  for (const [name, value] of Object.entries(metrics)) (byMetric[name] ??= []).push(value);
  samples.set(id, bySide);
}

function ratiosOf(num: Record<string, number[]>, den: Record<string, number[]>): Record<string, RatioSummary> {
  return Object.fromEntries(
    Object.keys(num)
      .filter((m) => den[m] && den[m]!.length === num[m]!.length && den[m]!.every((v) => v !== 0))
      .map((m) => [m, summarizeRatios(num[m]!, den[m]!)]),
  );
}

/** Per metric, round by round: (adaptive − plain) / (accelerated − plain); a metric where a round had no difference to share has none. */
export function gainKeptOf(plain: Record<string, number[]>, acc: Record<string, number[]>, adaptive: Record<string, number[]>): Record<string, RatioSummary> {
  const out: Record<string, RatioSummary> = {};
  for (const [m, a] of Object.entries(adaptive)) {
    const p = plain[m];
    const x = acc[m];
    if (!p || !x || p.length !== a.length || x.length !== a.length || x.some((v, i) => v === p[i])) continue;
    out[m] = summarizeRatios(a.map((v, i) => v - p[i]!), x.map((v, i) => v - p[i]!));
  }
  return out;
}

/** Per metric, round by round: adaptive / the better of plain and accelerated in that round (lower or higher, as the metric goes). */
export function adaptiveVsBestOf(kind: CaseSpec['kind'], plain: Record<string, number[]>, acc: Record<string, number[]>, adaptive: Record<string, number[]>): Record<string, RatioSummary> {
  const out: Record<string, RatioSummary> = {};
  for (const [m, a] of Object.entries(adaptive)) {
    const p = plain[m];
    const x = acc[m];
    if (!p || !x || p.length !== a.length || x.length !== a.length) continue;
    const lower = METRICS[kind].find((spec) => spec.name === m)?.better === 'lower';
    const best = p.map((v, i) => (lower ? Math.min(v, x[i]!) : Math.max(v, x[i]!)));
    if (best.some((v) => v === 0)) continue;
    out[m] = summarizeRatios(a, best);
  }
  return out;
}

function caseResults(opts: BenchOptions, samples: Samples, ports: ReadonlyMap<string, number>, plainPorts: ReadonlyMap<string, number>, adaptive: ReadonlyMap<string, AdaptiveReport>): CaseResult[] {
  return opts.cases.map((c) => {
    const bySide = samples.get(caseId(c)) ?? {};
    // Paths other than loopback compare against the loopback case's Unix runs (same round, same CPUs).
    const unix = bySide.unix ?? samples.get(caseId({ ...c, path: 'loopback' }))?.unix;
    const sides = Object.fromEntries(
      Object.entries(bySide).map(([side, metrics]) => [
        side,
        Object.fromEntries(Object.entries(metrics).map(([m, v]) => [m, summarizeRounds(v)])) as Record<string, RoundSummary>,
      ]),
    ) as CaseResult['sides'];
    const acc = bySide.accelerated ?? {};
    const plain = bySide.plain ?? {};
    const adapt = bySide.adaptive ?? {};
    const report = adaptive.get(caseId(c));
    return {
      id: caseId(c),
      kind: c.kind,
      path: c.path.name,
      size: c.size,
      pinning: c.pinning,
      port: ports.get(caseId(c))!,
      plainPort: plainPorts.get(caseId(c))!,
      pairedPlainAdaptive: pairedKind(c.kind),
      cpus: cpusFor(opts, c),
      sides,
      ratios: {
        acceleratedVsPlain: ratiosOf(acc, plain),
        ...(unix ? { acceleratedVsUnix: ratiosOf(acc, unix) } : {}),
        adaptiveVsPlain: ratiosOf(adapt, plain),
        gainKept: gainKeptOf(plain, acc, adapt),
        adaptiveVsBest: adaptiveVsBestOf(c.kind, plain, acc, adapt),
      },
      ...(report ? { adaptive: report } : {}),
    };
  });
}

/**
 * sockperf ping-pong and loadgen rr back to back, same path, size, CPUs and
 * duration: adjacent in time, so the VM's drift over the whole bench does
 * not show up as a disagreement between the two tools.
 */
async function sockperfChecks(ctx: Context, step: (label: string) => void): Promise<SockperfCheck[]> {
  const loopback = ctx.opts.paths.find((p) => p.name === 'loopback');
  if (!loopback) return [];
  const c: CaseSpec = { kind: 'rr', path: loopback, size: 64, pinning: 'same-cpu' };
  const checks: SockperfCheck[] = [];
  for (const side of ['plain', 'accelerated'] as const) {
    step(`sockperf ping-pong 64 B loopback same-cpu ${side}, then loadgen`);
    const cgroup = side === 'accelerated' ? { cgroup: ctx.accelerated.cgroup } : {};
    ctx.accelerated.setAdaptive(false);
    const before = ctx.accelerated.counters();
    const rtt = await runSockperf(ctx.io.group, {
      host: '127.0.0.1',
      size: 64,
      seconds: ctx.opts.sockperfSeconds,
      server: { ...cgroup, cpus: ctx.opts.cpus.sameCpu },
      client: { ...cgroup, cpus: ctx.opts.cpus.sameCpu },
    });
    const d = delta(before, ctx.accelerated.counters());
    if (side === 'accelerated' && (d.sockets_inserted < 2n || d.bytes_redirected === 0n || d.bytes_passed > 0n)) {
      throw new BenchIntegrityError(`sockperf accelerated: not redirected (sockets_inserted +${d.sockets_inserted}, bytes_redirected +${d.bytes_redirected}, bytes_passed +${d.bytes_passed})`);
    }
    if (side === 'plain' && d.sockets_inserted > 0n) throw new BenchIntegrityError('sockperf plain: the plain run was accelerated');
    const { metrics } = await measureOnce(ctx, c, side, { warmupMs: ctx.opts.warmupMs, durationMs: ctx.opts.sockperfSeconds * 1000, verify: 'sampled' });
    const loadgen = { p50Us: metrics.p50Us!, p99Us: metrics.p99Us!, meanUs: metrics.meanUs! };
    checks.push({ side, path: 'loopback', size: 64, pinning: 'same-cpu', sockperf: rtt, loadgen, p50Ratio: loadgen.p50Us / rtt.p50Us });
  }
  return checks;
}

/**
 * The mesh preset the daemon needs for the chosen paths; 'none' unless one
 * needs a mesh. With a mesh on, the accelerated side's connections to
 * non-loopback addresses become pairing candidates too: the integrity gate
 * proves, path by path, that the other paths still pair and keep their bytes.
 */
export function meshOf(paths: readonly BenchPath[]): MeshName {
  const meshes = [...new Set(paths.flatMap((p) => (p.mesh ? [p.mesh] : [])))];
  if (meshes.length > 1) throw new UsageError(`the chosen paths need different meshes (${meshes.join(', ')}): bench them in separate runs`);
  return meshes[0] ?? 'none';
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new PrivilegeError('sockaccel bench creates a cgroup, network namespaces and BPF programs: it must run as root');
  }
}

const METHOD = {
  loadGenerator:
    'build/native/loadgen (scripts/bench/loadgen.c): one blocking socket per process, no event loop; server and client are separate processes, each pinned with taskset',
  order:
    `each round runs every case; within a case plain, accelerated with the adaptive policy off, accelerated with it on (adaptive), then the Unix domain socket limit (loopback rr and stream cases; other paths are compared with it), in reverse order every other round (A B C, C B A); round i of every case shares one time slice. For a connection per request, the setup rate and the mixed service, plain and adaptive run together, taking turns on their CPU ${TURN_EVERY} requests or connections at a time (loadgen --turn, each with its own server and port, each timing only its own turns), the first of the two first: their per-round ratio is then a paired one, which separate runs of these cases are not on a shared VM (±20% per round). After every run the next waits (up to 3 s) until the allocated TCP sockets of the machine are back to where they were before it: accelerated sockets are freed late, by a kworker, and that work must not land in the window of the next side. Every accelerated and adaptive run of a case (and its adaptive warm-up) uses the same server port, chosen free at the start: one service for the daemon to learn; plain runs use a port of their own. Before a case's first adaptive run, a warm-up on the adaptive side (at most 2 s or 200 connections) and a wait of up to 3 s for the learner's decision on the case's service. Reported: the median over rounds, the spread (min..max), and the median of the per-round ratios; gain kept = (adaptive − plain) / (accelerated − plain) per round; each goal is met or missed when the 90% interval of its median over the rounds (order statistics, no assumption on the noise) lies on one side of the target, and unsettled when it straddles it`,
  integrity:
    'rr: every request and every response compared byte for byte with a seeded pattern (responses from another pattern offset, so a socket that reads its own request fails); stream: the server compares what it reads with the pattern at its stream offset, every byte in the integrity gate and in measured runs the head and tail of every read plus 16 bytes at every 4 KiB of stream offset (any lost, repeated or reordered block shifts every later byte against the prime-length pattern, so a sample catches it without a full compare eating the CPU that moves the bytes), byte counts compared at the end; connrate: every connection ends in a clean EOF, accept and connect counts match; crr and mixed: every request and response compared like rr, every fresh connection ends in the server\'s clean EOF, request and connection counts match. Accelerated runs (adaptive off) must show both sockets of every connection paired (a proxy chain: every hop) and the redirect counter covering every payload byte on every hop, with none over plain TCP; plain runs must leave the counters untouched; adaptive runs are checked for their bytes only (leaving a connection plain is their point), and their counters are reported: socket pairs redirected, connections left plain by a decision, connections explored',
  cpuAccounting:
    'stream cpuSecPerGB: busy time (user+nice+system+irq+softirq, /proc/stat) of the CPUs both processes are pinned to over the measured window, per GB moved; clientCpuSecPerGB: the writer\'s own getrusage',
} as const;

export async function runBench(opts: BenchOptions, configArgv: readonly string[], io: BenchIo): Promise<BenchResults> {
  requireRoot();
  checkLoadgenBuilt();
  if (opts.sockperf) checkSockperfInstalled();
  const started = new Date();
  const cleanups: (() => Promise<void>)[] = [];
  const prepared = new Map<string, PreparedPath>();
  const abortIfAsked = () => {
    if (io.signal.aborted) throw new Error('interrupted');
  };

  const sideRuns = opts.cases.reduce((n, c) => n + roundRuns(c, 1).length, 0);
  const gateRuns = opts.paths.length * 3;
  const sockperfRuns = opts.sockperf ? 2 : 0;
  const warmups = opts.cases.length;
  const progress = io.progress(gateRuns + warmups + opts.rounds * sideRuns + sockperfRuns);
  const step = (label: string) => {
    abortIfAsked();
    progress.step(label);
  };
  // Leftovers of a run that was killed: their processes would share the
  // CPUs with this run's, and nothing else would ever remove them.
  await removeDeadRuns((line) => progress.note(line)).catch((err: unknown) => {
    // Someone else's mess must not stop this run; purge retries and names it.
    progress.note(err instanceof Error ? err.message : String(err));
  });
  // Recorded before anything is made, so that whatever ends this run, even
  // SIGKILL, the next bench, doctor or purge finds what it leaves.
  const name = newRunId();
  const runRecord = new RunRecorder(name);
  // Every child of this process is the run's; the group's own ones get their description.
  const recordChildren = () => {
    try {
      const described = new Map(io.group.running.map((p) => [p.pid, p.description]));
      runRecord.update({ children: ownChildren().map((c) => ({ ...c, description: described.get(c.pid) ?? c.description })) });
    } catch (err) {
      io.log.warn({ err }, 'could not update the bench run record: after a SIGKILL, purge might miss a process of this run');
    }
  };
  io.group.watch(recordChildren);
  // Named up front, so that whoever watches (a test, an operator after a
  // crash) knows what this run creates.
  const scratch = scratchLocations(name);
  progress.note(`run ${name}: cgroup ${scratch.cgroup}, pin root ${scratch.pinRoot}, namespaces ${name}-*; owner pid ${process.pid}, recorded in ${recordPath(name)}`);

  let succeeded = false;
  try {
    const unixDir = fs.mkdtempSync(path.join(os.tmpdir(), name));
    runRecord.update({ scratchDir: unixDir });
    cleanups.push(async () => fs.rmSync(unixDir, { recursive: true, force: true }));
    // The accelerated side first: paths place their own processes (proxies) in its cgroup.
    const accelerated = await startAcceleratedSide({
      name,
      configArgv,
      localCidrs: opts.paths.flatMap((p) => p.localCidrs),
      mesh: meshOf(opts.paths),
      log: io.log,
    });
    recordChildren(); // the daemon's own (its address monitor)
    // Before the daemon stops: our processes must be out of its cgroup.
    cleanups.push(accelerated.close, () => io.group.killAll());
    for (const p of opts.paths) {
      abortIfAsked();
      const ready = await p.setup({
        name: (label) => `${name}-${label}`,
        placement: (side) => (side === 'accelerated' ? { cgroup: accelerated.cgroup } : {}),
        group: io.group,
      });
      cleanups.push(ready.cleanup);
      prepared.set(p.name, ready);
    }
    const casePorts = await chooseFreePorts(2 * opts.cases.length);
    const ports = new Map(opts.cases.map((c, i) => [caseId(c), casePorts[2 * i]!]));
    const plainPorts = new Map(opts.cases.map((c, i) => [caseId(c), casePorts[2 * i + 1]!]));
    const gateCtx: Context = { opts, io, accelerated, prepared, unixDir, unixCount: 0, spuriousEagain: { plain: 0, accelerated: 0, adaptive: 0, unix: 0 }, settling: Object.fromEntries((['plain', 'accelerated', 'adaptive', 'unix'] as const).map((side) => [side, { waitedMs: 0, unsettled: 0 }])) as Context['settling'], ports: new Map(), plainPorts: new Map(), pairingRetries: [] };
    // The gate's runs take any free port: they are not the cases' services.
    const integrityGateResult = await integrityGate(gateCtx, step);
    const ctx: Context = { ...gateCtx, ports, plainPorts };
    const samples: Samples = new Map();
    const warm = new Map<string, Pick<AdaptiveReport, 'warmup' | 'decisions'>>();
    const adaptiveCounts = new Map<string, { paired: bigint; plain: bigint; explored: bigint }>();
    for (let round = 1; round <= opts.rounds; round++) {
      for (const c of opts.cases) {
        const plan: RunPlan = { warmupMs: opts.warmupMs, durationMs: opts.durationMs[c.kind], verify: 'sampled' };
        for (const run of roundRuns(c, round)) {
          if ((run.pair || run.side === 'adaptive') && !warm.has(caseId(c))) {
            step(`${caseLabel(c)}: adaptive warm-up and the learner's decision`);
            warm.set(caseId(c), await warmUp(ctx, c));
          }
          let measured: [Side, Measured][];
          if (run.pair) {
            step(`round ${round}/${opts.rounds}: ${caseLabel(c)} plain and adaptive, taking turns`);
            measured = await measurePair(ctx, c, plan, run.side);
          } else {
            step(`round ${round}/${opts.rounds}: ${caseLabel(c)} ${run.side}`);
            measured = [[run.side, await measureOnce(ctx, c, run.side, plan)]];
          }
          for (const [side, { metrics, delta: d }] of measured) {
            record(samples, c, side, metrics);
            if (side !== 'adaptive') continue;
            const counts = adaptiveCounts.get(caseId(c)) ?? { paired: 0n, plain: 0n, explored: 0n };
            adaptiveCounts.set(caseId(c), {
              paired: counts.paired + d.sockets_inserted / 2n,
              plain: counts.plain + d.skipped_adaptive,
              explored: counts.explored + d.adaptive_explored,
            });
          }
        }
      }
    }
    ctx.accelerated.setAdaptive(false);
    const adaptiveReports = new Map<string, AdaptiveReport>(
      [...warm].map(([id, w]) => {
        const n = adaptiveCounts.get(id) ?? { paired: 0n, plain: 0n, explored: 0n };
        return [id, { ...w, pairedConnections: Number(n.paired), plainConnections: Number(n.plain), exploredConnections: Number(n.explored) }];
      }),
    );
    const cases = caseResults(opts, samples, ports, plainPorts, adaptiveReports);
    const sockperf = opts.sockperf ? await sockperfChecks(ctx, step) : null;
    succeeded = true;
    return {
      schemaVersion: RESULTS_SCHEMA_VERSION,
      sockaccelVersion: io.version,
      profile: opts.profile,
      startedAt: started.toISOString(),
      elapsedSec: (Date.now() - started.getTime()) / 1000,
      environment: {
        kernel: os.release(),
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        onlineCpus: os.cpus().length,
        cpuSets: { sameCpu: opts.cpus.sameCpu, crossCpu: opts.cpus.crossCpu },
      },
      method: {
        ...METHOD,
        rounds: opts.rounds,
        warmupMs: opts.warmupMs,
        durationMs: opts.durationMs,
        adaptiveWarmup: opts.adaptiveWarmup,
        acceleratedSide: `scratch cgroup ${accelerated.cgroup} with its own pin root ${accelerated.pinRoot}, mesh ${accelerated.mesh}; the data path runs inside the bench process, the host's daemon is not used`,
      },
      paths: opts.paths.map((p) => ({ name: p.name, description: p.description })),
      integrityGate: integrityGateResult,
      cases,
      sockperf,
      goals: evaluateGoals(cases),
      calibration: deriveCalibration(cases),
      observations: { spuriousEagain: ctx.spuriousEagain, settling: ctx.settling, pairingRetries: ctx.pairingRetries },
    };
  } finally {
    progress.finish(succeeded);
    try {
      await attemptEach('bench cleanup incomplete', cleanups.reverse());
      // The record goes last, and only when nothing is left: else the next bench or purge finishes the job.
      runRecord.remove();
    } catch (err) {
      const text = `${(err as Error).message}; the next sockaccel bench or purge removes what is left`;
      // A failed run's own error is the news; a clean run must not hide leftovers.
      if (succeeded) throw new AggregateError(err instanceof AggregateError ? err.errors : [err], text);
      io.log.error(text);
    }
  }
}
