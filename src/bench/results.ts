/**
 * The shape of `sockaccel bench --json` (and results.json), and the goals
 * the numbers are held against. Bump RESULTS_SCHEMA_VERSION on any change a
 * reader of the JSON would notice.
 */
import type { Calibration } from './calibration';
import type { MedianInterval, RatioSummary, RoundSummary } from './stats';
import type { Mode } from './loadgen';

/**
 * 2: the adaptive side (issue 10): sides.adaptive, ratios adaptiveVsPlain,
 * gainKept and adaptiveVsBest, a fixed port and the adaptive side's
 * connections and decision per case, kinds crr and mixed, calibration.
 * 3: every ratio's 90% interval of the median (interval), each goal's
 * interval and verdict; plain runs on their own port (plainPort), and for
 * crr, connrate and mixed plain and adaptive measured taking turns
 * (pairedPlainAdaptive).
 * 4: observations.pairingRetries, the accelerated runs measured again after
 * a connection lost its pairing race.
 */
export const RESULTS_SCHEMA_VERSION = 4;

/**
 * plain TCP; accelerated with the adaptive policy off (everything that pairs
 * is redirected); adaptive: accelerated with the policy on, after a warm-up;
 * the Unix domain socket limit line.
 */
export type Side = 'plain' | 'accelerated' | 'adaptive' | 'unix';
export const TCP_SIDES = ['plain', 'accelerated', 'adaptive'] as const;
export type Pinning = 'same-cpu' | 'cross-cpu';

export interface MetricSpec {
  readonly name: string;
  readonly unit: string;
  readonly better: 'lower' | 'higher';
}

/** Request rate and per-request latency: what a client gets done, whatever its connections. */
const PER_REQUEST: readonly MetricSpec[] = [
  { name: 'tps', unit: 'requests/s', better: 'higher' },
  { name: 'p50Us', unit: 'µs', better: 'lower' },
  { name: 'p99Us', unit: 'µs', better: 'lower' },
  { name: 'meanUs', unit: 'µs', better: 'lower' },
];

/** Metrics per kind of case; the first is the headline (table, chart, goals). */
export const METRICS: Readonly<Record<Mode, readonly MetricSpec[]>> = {
  rr: [
    { name: 'p50Us', unit: 'µs', better: 'lower' },
    { name: 'p99Us', unit: 'µs', better: 'lower' },
    { name: 'meanUs', unit: 'µs', better: 'lower' },
    { name: 'tps', unit: 'transactions/s', better: 'higher' },
  ],
  stream: [
    { name: 'gbps', unit: 'Gbit/s', better: 'higher' },
    { name: 'cpuSecPerGB', unit: 'CPU s/GB', better: 'lower' },
    { name: 'clientCpuSecPerGB', unit: 'CPU s/GB', better: 'lower' },
    { name: 'serverBytesPerRead', unit: 'bytes', better: 'higher' },
  ],
  connrate: [{ name: 'connPerSec', unit: 'connections/s', better: 'higher' }],
  // A connection per request, and keep-alive and one-shot requests mixed on one port.
  crr: PER_REQUEST,
  mixed: PER_REQUEST,
};

export function headline(mode: Mode): MetricSpec {
  return METRICS[mode][0]!;
}

export interface CaseResult {
  /** e.g. "rr/loopback/64/same-cpu". */
  readonly id: string;
  readonly kind: Mode;
  readonly path: string;
  /** Message size (rr, crr, mixed) or write size (stream); null for connrate. */
  readonly size: number | null;
  readonly pinning: Pinning;
  /** The server's TCP port in every accelerated and adaptive run of the case (warm-up included): one service for the daemon to learn. */
  readonly port: number;
  /** The plain runs' server port (their own, so that a plain run can take turns with an adaptive one). */
  readonly plainPort: number;
  /** Whether plain and adaptive were measured taking turns, a paired ratio per round (crr, connrate, mixed). */
  readonly pairedPlainAdaptive: boolean;
  /** taskset CPU lists. */
  readonly cpus: { readonly server: string; readonly client: string };
  /** Per side, per metric: the rounds and their median and spread. */
  readonly sides: Partial<Record<Side, Record<string, RoundSummary>>>;
  readonly ratios: {
    /** accelerated / plain, per round and median, per metric. */
    readonly acceleratedVsPlain: Record<string, RatioSummary>;
    /** accelerated / Unix domain socket (the practical limit), when a Unix run exists for the case. */
    readonly acceleratedVsUnix?: Record<string, RatioSummary>;
    /** adaptive / plain. */
    readonly adaptiveVsPlain: Record<string, RatioSummary>;
    /** (adaptive − plain) / (accelerated − plain) per round: the share of acceleration's gain (or loss) adaptive kept. */
    readonly gainKept: Record<string, RatioSummary>;
    /** adaptive / the better of plain and accelerated, per round. */
    readonly adaptiveVsBest: Record<string, RatioSummary>;
  };
  /** What the adaptive side did with the case's connections. */
  readonly adaptive?: AdaptiveReport;
}

export interface AdaptiveDecisionReport {
  /** The daemon's service id, e.g. "127.0.0.1:20001@netns 4097". */
  readonly service: string;
  readonly verdict: string;
  readonly reason: string;
  readonly explorePermille: number;
  readonly savedNsPerConn: number;
  readonly evidenceConns: number;
}

export interface AdaptiveReport {
  /** The warm-up before the first measured adaptive run. */
  readonly warmup: { readonly connections: number; readonly elapsedMs: number; readonly decisionWaitMs: number };
  /** The learner's decisions for the case's port once the warm-up was over (empty: none within the deadline). */
  readonly decisions: readonly AdaptiveDecisionReport[];
  /** Over the measured adaptive runs, from the daemon's counters: socket pairs redirected, connections left plain by a decision, explored ones. */
  readonly pairedConnections: number;
  readonly plainConnections: number;
  readonly exploredConnections: number;
}

export interface SockperfCheck {
  readonly side: 'plain' | 'accelerated';
  readonly path: string;
  readonly size: number;
  readonly pinning: Pinning;
  /** sockperf ping-pong --full-rtt, µs. */
  readonly sockperf: { readonly p50Us: number; readonly p99Us: number; readonly meanUs: number };
  /** loadgen rr right after it: same path, size, CPUs and duration, µs. */
  readonly loadgen: { readonly p50Us: number; readonly p99Us: number; readonly meanUs: number };
  /** loadgen p50 / sockperf p50. */
  readonly p50Ratio: number;
}

/**
 * What the rounds settle about a goal: met or missed when the whole interval
 * of the median (90%; with fewer than 5 rounds the range, at its stated lower
 * confidence) lies on one side of the target; unsettled when the interval
 * straddles it (the rounds' noise is wider than the distance to the target:
 * more rounds, or a quieter machine, decide it) or with a single round.
 */
export type GoalVerdict = 'met' | 'missed' | 'unsettled';

export interface GoalResult {
  readonly id: string;
  readonly description: string;
  readonly target: string;
  /** The measured ratio (the median over rounds), or null when the cases it needs were not run. */
  readonly measured: number | null;
  /** Whether the median meets the target: the point estimate. */
  readonly met: boolean | null;
  /** The median's interval (see MedianInterval); null for a count, or for a single round. */
  readonly interval: MedianInterval | null;
  /** null when not measured. */
  readonly verdict: GoalVerdict | null;
}

export interface BenchResults {
  readonly schemaVersion: typeof RESULTS_SCHEMA_VERSION;
  readonly sockaccelVersion: string;
  readonly profile: 'quick' | 'thorough';
  readonly startedAt: string;
  readonly elapsedSec: number;
  readonly environment: {
    readonly kernel: string;
    readonly cpuModel: string;
    readonly onlineCpus: number;
    readonly cpuSets: { readonly sameCpu: string; readonly crossCpu: { readonly server: string; readonly client: string } | null };
  };
  readonly method: {
    readonly loadGenerator: string;
    readonly order: string;
    readonly rounds: number;
    readonly warmupMs: number;
    readonly durationMs: Readonly<Record<Mode, number>>;
    readonly adaptiveWarmup: { readonly ms: number; readonly connections: number };
    readonly integrity: string;
    readonly cpuAccounting: string;
    readonly acceleratedSide: string;
  };
  readonly paths: readonly { readonly name: string; readonly description: string }[];
  /** What the pre-flight runs proved on each path before any measurement. */
  readonly integrityGate: readonly { readonly path: string; readonly checks: readonly string[] }[];
  readonly cases: readonly CaseResult[];
  readonly sockperf: readonly SockperfCheck[] | null;
  readonly goals: readonly GoalResult[];
  /** The daemon's adaptive cost constants derived from this run (see calibration.ts). */
  readonly calibration: Calibration;
  /** Behaviour of the accelerated path seen while measuring (not failures of the bench). */
  readonly observations: {
    /**
     * Blocking recv() calls that returned EAGAIN instead of waiting or
     * returning 0, by side: on Linux 6.18 an accelerated socket does this
     * once when the peer's FIN arrives while it waits for data.
     */
    readonly spuriousEagain: Readonly<Record<Side, number>>;
    /**
     * After each run, by side: milliseconds spent waiting until the machine's
     * allocated TCP sockets were back to where they were before it (an
     * accelerated socket is freed late, by a kworker), and runs after which
     * that did not happen within 3 s.
     */
    readonly settling: Readonly<Record<Side, { readonly waitedMs: number; readonly unsettled: number }>>;
    /**
     * Accelerated runs measured again, by label: a connection wrote before
     * its server end paired and fell back to plain TCP as a whole (bytes
     * exact), so the run had measured plain TCP.
     */
    readonly pairingRetries: readonly string[];
  };
}

const KiB = 1024;

export function find(cases: readonly CaseResult[], kind: Mode, size: number | null, pinning: Pinning, path = 'loopback'): CaseResult | undefined {
  return cases.find((c) => c.kind === kind && c.path === path && c.size === size && c.pinning === pinning);
}

/** The verdict of a target that is a bound (≥ or ≤): both ends of the interval on its side, or neither. */
export function verdictOf(interval: MedianInterval | null, meets: (r: number) => boolean): GoalVerdict {
  if (!interval) return 'unsettled';
  const low = meets(interval.low);
  const high = meets(interval.high);
  if (low && high) return 'met';
  return !low && !high ? 'missed' : 'unsettled';
}

function goal(id: string, description: string, target: string, ratio: RatioSummary | undefined, meets: (r: number) => boolean): GoalResult {
  if (ratio === undefined) return { id, description, target, measured: null, met: null, interval: null, verdict: null };
  return { id, description, target, measured: ratio.median, met: meets(ratio.median), interval: ratio.interval, verdict: verdictOf(ratio.interval, meets) };
}

/** Whether the case's headline ratio is no worse than plain TCP. */
export function notSlower(c: CaseResult): boolean | undefined {
  const spec = headline(c.kind);
  const r = c.ratios.acceleratedVsPlain[spec.name]?.median;
  if (r === undefined) return undefined;
  return spec.better === 'lower' ? r <= 1 : r >= 1;
}

/** The project's performance goals (benchmark targets, not pass/fail of the bench). */
export function evaluateGoals(cases: readonly CaseResult[]): GoalResult[] {
  const rr64 = find(cases, 'rr', 64, 'same-cpu');
  const stream128 = find(cases, 'stream', 128 * KiB, 'same-cpu');
  const conn = find(cases, 'connrate', null, 'same-cpu');
  const sized = cases.filter((c) => c.kind === 'rr' || c.kind === 'stream');
  const slower = sized.filter((c) => notSlower(c) === false);
  return [
    goal('rr64-vs-plain', '64 B RTT p50, same CPU, loopback: accelerated / plain', '≤ 0.65', rr64?.ratios.acceleratedVsPlain.p50Us, (r) => r <= 0.65),
    goal('rr64-vs-unix', '64 B RTT p50, same CPU, loopback: accelerated / Unix socket', '≤ 1.00', rr64?.ratios.acceleratedVsUnix?.p50Us, (r) => r <= 1),
    goal('stream128k', '128 KiB-write throughput, same CPU, loopback: accelerated / plain', '≥ 2.00', stream128?.ratios.acceleratedVsPlain.gbps, (r) => r >= 2),
    goal('connrate', 'connection setup rate, same CPU, loopback: accelerated / plain', '≥ 0.95', conn?.ratios.acceleratedVsPlain.connPerSec, (r) => r >= 0.95),
    {
      id: 'no-size-slower',
      description: `no RTT or throughput case slower than plain TCP${slower.length ? ` (slower: ${slower.map((c) => c.id).join(', ')})` : ''}`,
      target: '0 cases',
      measured: sized.length ? slower.length : null,
      met: sized.length ? slower.length === 0 : null,
      interval: null,
      // Each case is judged on its median: a count of cases has no interval of its own.
      verdict: sized.length ? (slower.length === 0 ? 'met' : 'missed') : null,
    },
    ...adaptiveGoals(cases),
  ];
}

/** Issue 10's targets: adaptive on is never slower than plain, keeps the winners' gain, and picks the better side of a mixed service. */
export function adaptiveGoals(cases: readonly CaseResult[]): GoalResult[] {
  const crr = find(cases, 'crr', 64, 'same-cpu');
  const stream1k = find(cases, 'stream', KiB, 'same-cpu');
  const conn = find(cases, 'connrate', null, 'same-cpu');
  const rr64 = find(cases, 'rr', 64, 'same-cpu');
  const stream128 = find(cases, 'stream', 128 * KiB, 'same-cpu');
  const chain = find(cases, 'rr', 64, 'same-cpu', 'sidecar-chain');
  const mixed = find(cases, 'mixed', 64, 'same-cpu');
  const atLeast = (r: number) => r >= 0.97;
  const rows = [
    goal('adaptive-crr64', 'a connection per request (64 B), requests/s, same CPU, loopback: adaptive on / plain', '≥ 0.97', crr?.ratios.adaptiveVsPlain.tps, atLeast),
    goal('adaptive-stream1k', '1 KiB-write throughput, same CPU, loopback: adaptive on / plain', '≥ 0.97', stream1k?.ratios.adaptiveVsPlain.gbps, atLeast),
    goal('adaptive-connrate', 'connection setup rate, same CPU, loopback: adaptive on / plain', '≥ 0.97', conn?.ratios.adaptiveVsPlain.connPerSec, atLeast),
    goal('adaptive-rr64-gain', '64 B RTT p50, same CPU, loopback: share of the gain adaptive on keeps, (on − plain) / (off − plain)', '≥ 0.97', rr64?.ratios.gainKept.p50Us, atLeast),
    goal('adaptive-stream128k-gain', '128 KiB-write throughput, same CPU, loopback: share of the gain adaptive on keeps', '≥ 0.97', stream128?.ratios.gainKept.gbps, atLeast),
  ];
  if (chain) rows.push(goal('adaptive-sidecar-chain-gain', '64 B RTT p50 through the sidecar chain, same CPU: share of the gain adaptive on keeps', '≥ 0.97', chain.ratios.gainKept.p50Us, atLeast));
  rows.push(goal('adaptive-mixed64', 'mixed service (64 B, half keep-alive, half one-shot), requests/s, same CPU, loopback: adaptive on / the better of plain and adaptive off', '≥ 0.97', mixed?.ratios.adaptiveVsBest.tps, atLeast));
  return rows;
}
