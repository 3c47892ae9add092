/**
 * What a bench run measures: a profile (thorough by default, --quick for a
 * first look) and the flags that narrow or stretch it. The case matrix is
 * paths × kinds × sizes × CPU pinnings; each profile picks the part of it
 * that fits its time.
 */
import fs from 'node:fs';
import { UsageError } from '../common/errors';
import type { Mode } from './loadgen';
import { PATHS, pathByName, type BenchPath } from './paths';
import type { Pinning } from './results';
import { cpuList } from './loadgen';

const KiB = 1024;
export const RR_SIZES = [64, KiB, 16 * KiB, 64 * KiB] as const;
export const STREAM_SIZES = [KiB, 16 * KiB, 128 * KiB] as const;
/** A connection per request, and half keep-alive half one-shot: small messages, where the setup cost shows. */
export const CRR_SIZES = [64] as const;
export const MIXED_SIZES = [64] as const;
const KINDS: readonly Mode[] = ['rr', 'stream', 'connrate', 'crr', 'mixed'];
const PINNINGS: readonly Pinning[] = ['same-cpu', 'cross-cpu'];

export interface CaseSpec {
  readonly kind: Mode;
  readonly path: BenchPath;
  readonly size: number | null;
  readonly pinning: Pinning;
}

export function caseId(c: { kind: Mode; path: { name: string } | string; size: number | null; pinning: Pinning }): string {
  const pathName = typeof c.path === 'string' ? c.path : c.path.name;
  return [c.kind, pathName, c.size ?? '-', c.pinning].join('/');
}

export interface CpuPlan {
  readonly sameCpu: string;
  /** null when only one CPU is usable. */
  readonly crossCpu: { readonly server: string; readonly client: string } | null;
}

export interface BenchOptions {
  readonly profile: 'quick' | 'thorough';
  readonly rounds: number;
  readonly warmupMs: number;
  readonly durationMs: Readonly<Record<Mode, number>>;
  readonly cases: readonly CaseSpec[];
  /** The adaptive side's per-case warm-up, before its first measured run (issue 10: at most 2 s or 200 connections). */
  readonly adaptiveWarmup: { readonly ms: number; readonly connections: number };
  readonly paths: readonly BenchPath[];
  readonly cpus: CpuPlan;
  readonly sockperf: boolean;
  /** Seconds per sockperf run. */
  readonly sockperfSeconds: number;
  readonly json: boolean;
  /** Write the JSON here too (besides results.json in outDir). */
  readonly out: string | undefined;
  readonly outDir: string;
}

interface Profile {
  readonly rounds: number;
  readonly warmupMs: number;
  readonly durationMs: BenchOptions['durationMs'];
  readonly sockperf: boolean;
  readonly sockperfSeconds: number;
  /** Which cases of the full matrix the profile runs. */
  includes(c: CaseSpec): boolean;
}

const PROFILES: Readonly<Record<'quick' | 'thorough', Profile>> = {
  // A few minutes: every path, size and (for RTT, which depends on it most)
  // both pinnings; throughput across CPUs on loopback only.
  thorough: {
    rounds: 5,
    warmupMs: 100,
    durationMs: { rr: 300, stream: 500, connrate: 400, crr: 400, mixed: 400 },
    sockperf: true,
    sockperfSeconds: 2,
    includes: (c) => c.pinning === 'same-cpu' || c.kind === 'rr' || (c.kind === 'stream' && c.path.name === 'loopback'),
  },
  // A few minutes: every size on loopback (same CPU), the smallest and
  // largest elsewhere, one cross-CPU RTT; the connection-per-request and
  // mixed cases on loopback only. Enough to evaluate every goal.
  // Three rounds (a median that is one run, and each side once first and
  // once last): the goals compare sides within a few percent.
  quick: {
    rounds: 3,
    warmupMs: 30,
    durationMs: { rr: 150, stream: 200, connrate: 250, crr: 250, mixed: 250 },
    sockperf: false,
    sockperfSeconds: 1,
    includes: (c) =>
      c.path.name === 'loopback'
        ? c.pinning === 'same-cpu' || (c.kind === 'rr' && c.size === 64)
        : c.pinning === 'same-cpu' && (c.kind === 'connrate' || ((c.kind === 'rr' || c.kind === 'stream') && (c.size === 64 || c.size === 128 * KiB))),
  },
};

/** Issue 10's bound on what the adaptive side may see of a case before it is measured. */
export const ADAPTIVE_WARMUP = { ms: 2000, connections: 200 } as const;

function list(flags: Readonly<Record<string, string | boolean>>, name: string): string[] | undefined {
  const value = flags[name];
  if (value === undefined || value === true) return undefined;
  return String(value).split(',').map((s) => s.trim()).filter(Boolean);
}

function positiveInt(flags: Readonly<Record<string, string | boolean>>, name: string, max: number): number | undefined {
  const value = flags[name];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be an integer in 1..${max}, got ${JSON.stringify(value)}`);
  return n;
}

function sizes(flags: Readonly<Record<string, string | boolean>>, name: string, allowed: readonly number[]): number[] {
  const given = list(flags, name);
  if (given === undefined) return [...allowed];
  return given.map((text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > 1024 * KiB) throw new UsageError(`--${name}: ${JSON.stringify(text)} is not a size in bytes (1..1048576)`);
    return n;
  });
}

function choose<T extends string>(flags: Readonly<Record<string, string | boolean>>, name: string, allowed: readonly T[]): T[] {
  const given = list(flags, name);
  if (given === undefined) return [...allowed];
  for (const g of given) {
    if (!allowed.includes(g as T)) throw new UsageError(`--${name}: unknown value "${g}"`, { hint: `choose from ${allowed.join(', ')}` });
  }
  return given as T[];
}

/** CPUs this process may run on (taskset can only pin within them). */
export function allowedCpus(status = fs.readFileSync('/proc/self/status', 'utf8')): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status);
  return m ? cpuList(m[1]!) : [0];
}

/**
 * Default: the last two usable CPUs, the server on the first, the client on
 * the second; same-CPU runs both on the second (CPU 0 takes more of the
 * machine's interrupts).
 */
export function planCpus(given: string[] | undefined, allowed: readonly number[]): CpuPlan {
  const chosen = given === undefined ? allowed.slice(-2) : given.map(Number);
  if (chosen.length === 0 || chosen.length > 2 || chosen.some((c) => !allowed.includes(c))) {
    throw new UsageError(`--cpus must name one or two of the usable CPUs (${allowed.join(',')})`);
  }
  const [a, b] = chosen;
  return { sameCpu: String(b ?? a), crossCpu: b === undefined || a === b ? null : { server: String(a), client: String(b) } };
}

export function parseBenchOptions(flags: Readonly<Record<string, string | boolean>>, now = new Date()): BenchOptions {
  const profileName = flags.quick === true ? 'quick' : 'thorough';
  const profile = PROFILES[profileName];
  const pathNames = choose(flags, 'paths', PATHS.map((p) => p.name));
  const paths = pathNames.map((n) => pathByName(n)!);
  const kinds = choose(flags, 'kinds', KINDS);
  const rrSizes = sizes(flags, 'rr-sizes', RR_SIZES);
  const streamSizes = sizes(flags, 'stream-sizes', STREAM_SIZES);
  const cpus = planCpus(list(flags, 'cpus'), allowedCpus());
  const pinnings = choose(flags, 'pinning', PINNINGS).filter((p) => p === 'same-cpu' || cpus.crossCpu !== null);
  // Sizes or pinnings named on the command line are run whatever the profile would pick.
  const explicit = (c: CaseSpec): boolean =>
    (c.kind === 'rr' && flags['rr-sizes'] !== undefined) ||
    (c.kind === 'stream' && flags['stream-sizes'] !== undefined) ||
    flags.pinning !== undefined;

  const cases: CaseSpec[] = [];
  for (const kind of kinds) {
    const kindSizes = kind === 'rr' ? rrSizes : kind === 'stream' ? streamSizes : kind === 'crr' ? [...CRR_SIZES] : kind === 'mixed' ? [...MIXED_SIZES] : [null];
    for (const path of paths.filter((p) => p.kinds?.includes(kind) ?? true)) {
      for (const size of kindSizes) {
        for (const pinning of pinnings) {
          const c: CaseSpec = { kind, path, size, pinning };
          if (profile.includes(c) || explicit(c)) cases.push(c);
        }
      }
    }
  }
  if (cases.length === 0) throw new UsageError('the chosen --paths, --kinds, sizes and --pinning leave nothing to measure');

  const duration = positiveInt(flags, 'duration-ms', 600_000);
  const adaptiveWarmupMs = positiveInt(flags, 'adaptive-warmup-ms', ADAPTIVE_WARMUP.ms);
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return {
    profile: profileName,
    rounds: positiveInt(flags, 'rounds', 100) ?? profile.rounds,
    warmupMs: profile.warmupMs,
    durationMs: duration === undefined ? profile.durationMs : (Object.fromEntries(KINDS.map((k) => [k, duration])) as Record<Mode, number>),
    adaptiveWarmup: { ms: adaptiveWarmupMs ?? ADAPTIVE_WARMUP.ms, connections: ADAPTIVE_WARMUP.connections },
    cases,
    paths: paths.filter((p) => cases.some((c) => c.path === p)),
    cpus,
    sockperf: flags.sockperf === true || profile.sockperf,
    sockperfSeconds: profile.sockperfSeconds,
    json: flags.json === true,
    out: typeof flags.out === 'string' ? flags.out : undefined,
    outDir: typeof flags['out-dir'] === 'string' ? flags['out-dir'] : `bench-results/${stamp}`,
  };
}
