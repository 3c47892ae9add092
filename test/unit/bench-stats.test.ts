import test from 'ava';
import { mean, median, medianInterval, percentile, ratio, ratios, spread, summarizeRatios, summarizeRounds } from '../../src/bench/stats';

test('percentile is nearest-rank: the smallest value with p% at or below it', (t) => {
  const values = [15, 20, 35, 40, 50];
  t.is(percentile(values, 5), 15);
  t.is(percentile(values, 30), 20);
  t.is(percentile(values, 40), 20);
  t.is(percentile(values, 50), 35);
  t.is(percentile(values, 100), 50);
  // 99th of 1..1000: the 990th value
  t.is(percentile(Array.from({ length: 1000 }, (_, i) => i + 1), 99), 990);
});

test('percentile does not care about input order and leaves the input alone', (t) => {
  const values = [50, 15, 40, 20, 35];
  t.is(percentile(values, 50), 35);
  t.deepEqual(values, [50, 15, 40, 20, 35]);
});

test('percentile refuses what has no answer', (t) => {
  t.throws(() => percentile([], 50), { instanceOf: RangeError });
  t.throws(() => percentile([1, 2], 0), { instanceOf: RangeError });
  t.throws(() => percentile([1, 2], 101), { instanceOf: RangeError });
  t.throws(() => percentile([1, Number.NaN], 50), { instanceOf: RangeError });
});

test('median of odd and even counts', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.is(median([7]), 7);
  t.throws(() => median([]), { instanceOf: RangeError });
});

test('mean', (t) => {
  t.is(mean([1, 2, 3, 6]), 3);
});

test('spread: min, max, and the range relative to the median', (t) => {
  t.deepEqual(spread([10, 11, 9, 10]), { min: 9, max: 11, relative: 0.2 });
  t.deepEqual(spread([5, 5, 5]), { min: 5, max: 5, relative: 0 });
  t.deepEqual(spread([0, 0]), { min: 0, max: 0, relative: 0 });
});

test('ratio and per-round ratios', (t) => {
  t.is(ratio(3, 4), 0.75);
  t.throws(() => ratio(1, 0), { instanceOf: RangeError });
  t.deepEqual(ratios([2, 6, 9], [4, 3, 9]), [0.5, 2, 1]);
  t.throws(() => ratios([1, 2], [1]), { instanceOf: RangeError });
});

test('summarizeRounds keeps the rounds and quotes their median', (t) => {
  const s = summarizeRounds([12, 10, 11, 30, 10]);
  t.is(s.median, 11);
  t.deepEqual(s.rounds, [12, 10, 11, 30, 10]);
  t.is(s.spread.min, 10);
  t.is(s.spread.max, 30);
});

test('summarizeRatios pairs round i with round i, so a slow round does not skew the ratio', (t) => {
  // Round 2 ran while the machine was busy: both sides slowed down alike.
  const plain = [10, 20, 10];
  const accelerated = [6, 12, 6];
  const r = summarizeRatios(accelerated, plain);
  t.deepEqual(r.perRound, [0.6, 0.6, 0.6]);
  t.is(r.median, 0.6);
  t.is(r.spread.relative, 0);
  // The ratio of medians would be the same here, but not in general:
  t.is(summarizeRatios([1, 3, 2], [1, 1, 4]).median, 1);
});

test('medianInterval: the order statistics whose binomial coverage is at least the one asked for', (t) => {
  // 5 rounds: min..max covers the median with 1 - 2/32 = 93.75%.
  t.deepEqual(medianInterval([5, 1, 4, 2, 3]), { low: 1, high: 5, confidence: 0.9375 });
  // Fewer cannot reach 90%: the range, with the confidence it has (3 rounds: 1 - 2/8).
  t.deepEqual(medianInterval([3, 1, 2]), { low: 1, high: 3, confidence: 0.75 });
  t.is(medianInterval([1, 2, 3, 4])!.confidence, 0.875);
  t.is(medianInterval([1]), null);
  // 20 rounds: the 6th smallest to the 6th largest, 1 - 2 * P(Bin(20, 1/2) <= 5) = 95.86%.
  const twenty = Array.from({ length: 20 }, (_, i) => 20 - i);
  const i20 = medianInterval(twenty)!;
  t.deepEqual([i20.low, i20.high], [6, 15]);
  t.is(i20.confidence.toFixed(4), '0.9586');
  // The 7th would only give 88.5%; asking for less widens less.
  t.deepEqual(
    [medianInterval(twenty, 0.8)!.low, medianInterval(twenty, 0.8)!.high],
    [7, 14],
  );
  t.throws(() => medianInterval([1, 2, 3], 1), { instanceOf: RangeError });
});

test('summarizeRatios gives the interval of the per-round ratios, none for one round', (t) => {
  const s = summarizeRatios([90, 100, 95, 99, 97], [100, 100, 100, 100, 100]);
  t.deepEqual(s.interval, { low: 0.9, high: 1, confidence: 0.9375 });
  t.is(summarizeRatios([1], [1]).interval, null);
});
