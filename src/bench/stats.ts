/**
 * The statistics of `sockaccel bench`: percentiles of samples, and the
 * summary of one metric over interleaved rounds (median, spread, ratio per
 * round). Rounds are few (3 to 100), so medians rather than means: one round
 * disturbed by the VM's neighbours must not move the headline number.
 */

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new RangeError('no values');
  if (values.some((v) => !Number.isFinite(v))) throw new RangeError(`non-finite value in ${JSON.stringify(values)}`);
  return [...values].sort((a, b) => a - b);
}

/** Nearest-rank percentile (0 < p <= 100): the smallest value with at least p% of the values at or below it. */
export function percentile(values: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  const s = sorted(values);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** The middle value; the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const s = sorted(values);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function mean(values: readonly number[]): number {
  return sorted(values).reduce((a, b) => a + b, 0) / values.length;
}

export interface Spread {
  readonly min: number;
  readonly max: number;
  /** (max - min) / median: 0.05 means the rounds lay within 5% of the median. */
  readonly relative: number;
}

export function spread(values: readonly number[]): Spread {
  const s = sorted(values);
  const min = s[0]!;
  const max = s[s.length - 1]!;
  const mid = median(s);
  return { min, max, relative: mid === 0 ? 0 : (max - min) / Math.abs(mid) };
}

/** a / b; a zero denominator has no ratio. */
export function ratio(a: number, b: number): number {
  if (b === 0) throw new RangeError(`ratio ${a} / 0`);
  return a / b;
}

/** Element-wise ratios of two equally long series (round i against round i). */
export function ratios(numerators: readonly number[], denominators: readonly number[]): number[] {
  if (numerators.length !== denominators.length) {
    throw new RangeError(`ratio of ${numerators.length} rounds against ${denominators.length}`);
  }
  return numerators.map((n, i) => ratio(n, denominators[i]!));
}

/** One metric over the rounds. */
export interface RoundSummary {
  readonly median: number;
  readonly spread: Spread;
  readonly rounds: readonly number[];
}

export function summarizeRounds(values: readonly number[]): RoundSummary {
  return { median: median(values), spread: spread(values), rounds: [...values] };
}

/** Where the true median lies, with the stated confidence, from the rounds alone. */
export interface MedianInterval {
  readonly low: number;
  readonly high: number;
  /** The coverage this interval actually has (at least the one asked for). */
  readonly confidence: number;
}

/** The confidence a goal's verdict asks of its interval. */
export const GOAL_CONFIDENCE = 0.9;

/**
 * A distribution-free confidence interval for the median: the k-th smallest
 * and k-th largest round, with k the largest rank for which the median lies
 * between them with at least the asked-for confidence (the number of rounds
 * below the median is Binomial(n, 1/2)). No assumption on the shape of the
 * noise, which on a shared VM is not normal: its runs are often bimodal.
 * With too few rounds for the confidence (fewer than 5 for 90%), the whole
 * range, whose lower coverage is stated (3 rounds: 75%); null for one round.
 */
export function medianInterval(values: readonly number[], confidence = GOAL_CONFIDENCE): MedianInterval | null {
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`confidence ${confidence} is not in (0, 1)`);
  const s = sorted(values);
  const n = s.length;
  if (n < 2) return null;
  // below: P(fewer than k of the n rounds fall below the median); pmf: P(exactly k).
  let pmf = 0.5 ** n;
  let below = pmf;
  let k = 1;
  while (k < n >> 1 && 1 - 2 * (below + pmf * ((n - k + 1) / k)) >= confidence) {
    pmf = (pmf * (n - k + 1)) / k;
    below += pmf;
    k++;
  }
  return { low: s[k - 1]!, high: s[n - k]!, confidence: 1 - 2 * below };
}

/**
 * A ratio over rounds: the ratio of each round (the two runs of a round sat
 * next to each other in time, so they share the machine's mood), their
 * median, which is the number to quote, and how far the rounds let that
 * median be trusted.
 */
export interface RatioSummary {
  readonly median: number;
  readonly spread: Spread;
  readonly perRound: readonly number[];
  /** 90% interval of the median (fewer than 5 rounds: the range, at its lower confidence); null for one round. */
  readonly interval: MedianInterval | null;
}

export function summarizeRatios(numerators: readonly number[], denominators: readonly number[]): RatioSummary {
  const perRound = ratios(numerators, denominators);
  return { median: median(perRound), spread: spread(perRound), perRound, interval: medianInterval(perRound) };
}
