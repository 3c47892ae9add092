/**
 * The shape of `sockaccel bench --json` (and results.json), and the goals
 * the numbers are held against. Bump RESULTS_SCHEMA_VERSION on any change a
 * reader of the JSON would notice.
 */
import type { RatioSummary, RoundSummary } from './stats';
import type { Mode } from './loadgen';

export const RESULTS_SCHEMA_VERSION = 1;

export type Side = 'plain' | 'accelerated' | 'unix';
export type Pinning = 'same-cpu' | 'cross-cpu';

export interface MetricSpec {
  readonly name: string;
  readonly unit: string;
  readonly better: 'lower' | 'higher';
}

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
};

export function headline(mode: Mode): MetricSpec {
  return METRICS[mode][0]!;
}

export interface CaseResult {
  /** e.g. "rr/loopback/64/same-cpu". */
  readonly id: string;
  readonly kind: Mode;
  readonly path: string;
  /** Message size (rr) or write size (stream); null for connrate. */
  readonly size: number | null;
  readonly pinning: Pinning;
  /** taskset CPU lists. */
  readonly cpus: { readonly server: string; readonly client: string };
  /** Per side, per metric: the rounds and their median and spread. */
  readonly sides: Partial<Record<Side, Record<string, RoundSummary>>>;
  readonly ratios: {
    /** accelerated / plain, per round and median, per metric. */
    readonly acceleratedVsPlain: Record<string, RatioSummary>;
    /** accelerated / Unix domain socket (the practical limit), when a Unix run exists for the case. */
    readonly acceleratedVsUnix?: Record<string, RatioSummary>;
  };
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

export interface GoalResult {
  readonly id: string;
  readonly description: string;
  readonly target: string;
  /** The measured ratio, or null when the cases it needs were not run. */
  readonly measured: number | null;
  readonly met: boolean | null;
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
    readonly durationMs: { readonly rr: number; readonly stream: number; readonly connrate: number };
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
  /** Behaviour of the accelerated path seen while measuring (not failures of the bench). */
  readonly observations: {
    /**
     * Blocking recv() calls that returned EAGAIN instead of waiting or
     * returning 0, by side: on Linux 6.18 an accelerated socket does this
     * once when the peer's FIN arrives while it waits for data.
     */
    readonly spuriousEagain: Readonly<Record<Side, number>>;
  };
}

const KiB = 1024;

function find(cases: readonly CaseResult[], kind: Mode, size: number | null, pinning: Pinning): CaseResult | undefined {
  return cases.find((c) => c.kind === kind && c.path === 'loopback' && c.size === size && c.pinning === pinning);
}

function goal(id: string, description: string, target: string, measured: number | undefined, met: (r: number) => boolean): GoalResult {
  return measured === undefined ? { id, description, target, measured: null, met: null } : { id, description, target, measured, met: met(measured) };
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
  const sized = cases.filter((c) => c.kind !== 'connrate');
  const slower = sized.filter((c) => notSlower(c) === false);
  return [
    goal('rr64-vs-plain', '64 B RTT p50, same CPU, loopback: accelerated / plain', '≤ 0.65', rr64?.ratios.acceleratedVsPlain.p50Us?.median, (r) => r <= 0.65),
    goal('rr64-vs-unix', '64 B RTT p50, same CPU, loopback: accelerated / Unix socket', '≤ 1.00', rr64?.ratios.acceleratedVsUnix?.p50Us?.median, (r) => r <= 1),
    goal('stream128k', '128 KiB-write throughput, same CPU, loopback: accelerated / plain', '≥ 2.00', stream128?.ratios.acceleratedVsPlain.gbps?.median, (r) => r >= 2),
    goal('connrate', 'connection setup rate, same CPU, loopback: accelerated / plain', '≥ 0.95', conn?.ratios.acceleratedVsPlain.connPerSec?.median, (r) => r >= 0.95),
    {
      id: 'no-size-slower',
      description: `no RTT or throughput case slower than plain TCP${slower.length ? ` (slower: ${slower.map((c) => c.id).join(', ')})` : ''}`,
      target: '0 cases',
      measured: sized.length ? slower.length : null,
      met: sized.length ? slower.length === 0 : null,
    },
  ];
}
