/* The adaptive policy's constants derived from a bench run: fabricated medians, hand-computed results. */
import test from 'ava';
import { calibrationSnippet, deriveCalibration } from '../../src/bench/calibration';
import type { CaseResult, Side } from '../../src/bench/results';
import { summarizeRounds } from '../../src/bench/stats';

function sameCpu(kind: CaseResult['kind'], size: number | null, metric: string, plain: number, accelerated: number, path = 'loopback'): CaseResult {
  const side = (v: number) => ({ [metric]: summarizeRounds([v]) });
  const sides: Partial<Record<Side, Record<string, ReturnType<typeof summarizeRounds>>>> = { plain: side(plain), accelerated: side(accelerated) };
  return {
    id: `${kind}/${path}/${size}/same-cpu`, kind, path, size, pinning: 'same-cpu', port: 20000, plainPort: 20001, pairedPlainAdaptive: false, cpus: { server: '1', client: '1' }, sides,
    ratios: { acceleratedVsPlain: {}, adaptiveVsPlain: {}, gainKept: {}, adaptiveVsBest: {} },
  };
}

const CASES = [
  // RTT 10 µs plain, 6 µs accelerated: 2 µs saved per turn.
  sameCpu('rr', 64, 'p50Us', 10, 6),
  // 25 µs per connection plain, 40 µs accelerated: the setup costs 15 µs.
  sameCpu('connrate', null, 'connPerSec', 40_000, 25_000),
  // A connection per request is not what the setup cost is read from.
  sameCpu('crr', 64, 'tps', 20_000, 1_000),
  // 1 KiB writes: 1024 ns each plain (8 Gbit/s), 2048 ns accelerated (4 Gbit/s): Δ = +1024 ns.
  sameCpu('stream', 1024, 'gbps', 8, 4),
  // 128 KiB writes: 52428.8 ns plain (20 Gbit/s), 26214.4 ns accelerated (40 Gbit/s): Δ = −26214.4 ns.
  sameCpu('stream', 131072, 'gbps', 20, 40),
  // Another path's numbers must not be used.
  sameCpu('rr', 64, 'p50Us', 100, 1, 'pod-to-pod'),
];

test('the four constants from rr, connrate and the two stream sizes', (t) => {
  const c = deriveCalibration(CASES);
  // byteSaving = (1024 + 26214.4) / (131072 − 1024) ns/B = 0.209449 ns/B; burst = 1024 + 1024·0.209449 = 1238.48 ns.
  t.deepEqual(c.constants, {
    adaptiveTurnSavingNs: 2000,
    adaptiveConnectionCostNs: 15_000,
    adaptiveByteSavingPs: 209,
    adaptiveBurstMessageCostNs: 1238,
  });
  t.deepEqual(c.inputs.rr64P50Us, { plain: 10, accelerated: 6 });
  t.deepEqual(c.inputs.stream128kGbps, { plain: 20, accelerated: 40 });
  t.deepEqual(JSON.parse(calibrationSnippet(c)!), c.constants);
});

test('a constant whose cases were not run is null, and so is what depends on it', (t) => {
  const noRr = deriveCalibration(CASES.filter((c) => c.kind !== 'rr'));
  t.is(noRr.constants.adaptiveTurnSavingNs, null);
  t.is(noRr.constants.adaptiveConnectionCostNs, 15_000, 'the setup cost stands on its own');
  t.is(deriveCalibration(CASES.filter((c) => c.kind !== 'connrate')).constants.adaptiveConnectionCostNs, null);
  t.is(noRr.constants.adaptiveByteSavingPs, 209);
  const only128k = deriveCalibration(CASES.filter((c) => !(c.kind === 'stream' && c.size === 1024)));
  t.is(only128k.constants.adaptiveByteSavingPs, null);
  t.is(only128k.constants.adaptiveBurstMessageCostNs, null);
  t.is(calibrationSnippet(deriveCalibration([])), null);
  t.regex(calibrationSnippet(noRr)!, /"adaptiveBurstMessageCostNs": 1238/);
});
