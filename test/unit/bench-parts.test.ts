/* The pure parts of `sockaccel bench`: options, integrity verdicts, parsers, chart. */
import test from 'ava';
import { axisScale } from '../../src/bench/chart-svg';
import { cpuList, integrityProblems, type LoadgenRun } from '../../src/bench/loadgen';
import { parseBenchOptions, planCpus, type CaseSpec } from '../../src/bench/options';
import { placedArgv } from '../../src/bench/processes';
import { Progress } from '../../src/bench/progress';
import { accelerationProblems, adaptiveVsBestOf, gainKeptOf, meshOf, pairingRaced, roundRuns } from '../../src/bench/runner';
import { candidatePorts, ephemeralRange, FIRST_PORT } from '../../src/bench/ports';
import { parseTcpAlloc, settle, SETTLE_SLACK } from '../../src/bench/settle';
import { adaptiveGoals, verdictOf, type CaseResult } from '../../src/bench/results';
import { summarizeRatios } from '../../src/bench/stats';
import { parseSockperfOutput } from '../../src/bench/sockperf';
import { STAT_FIELDS, type Stats } from '../../src/kernel/bpf-layout';
import { UsageError } from '../../src/common/errors';
import type { RatioSummary } from '../../src/bench/stats';

const zero = (): Stats => Object.fromEntries(STAT_FIELDS.map((f) => [f, 0n])) as Stats;

const rrRun = (over: Partial<{ messages: number; serverMessages: number; ok: boolean }> = {}): LoadgenRun => ({
  client: {
    mode: 'rr',
    size: 64,
    messages: over.messages ?? 100,
    connections: 1,
    transactions: 90,
    elapsedNs: 1e6,
    latencyNs: { min: 1, p50: 2, p90: 3, p99: 4, p999: 5, max: 6, mean: 2, stddev: 1 },
    histogram: [],
    integrity: { ok: over.ok ?? true, checkedBytes: 6400, firstBadMessage: over.ok === false ? 7 : -1 },
  },
  serverConn: { mode: 'rr', messages: over.serverMessages ?? over.messages ?? 100, badMessages: 0 },
  serverSummary: { accepted: 1, failures: 0, spuriousEagain: 0 },
  spuriousEagain: 0,
});

test('placedArgv joins the cgroup first, then the namespace, then the CPUs', (t) => {
  t.deepEqual(placedArgv(['loadgen', 'server'], { cgroup: '/cg', netns: 'ns1', cpus: '1' }), [
    'sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', '/cg',
    'ip', 'netns', 'exec', 'ns1', 'taskset', '-c', '1', 'loadgen', 'server',
  ]);
  t.deepEqual(placedArgv(['x'], {}), ['x']);
});

test('cpuList reads taskset lists', (t) => {
  t.deepEqual(cpuList('1'), [1]);
  t.deepEqual(cpuList('0,2-4'), [0, 2, 3, 4]);
  t.throws(() => cpuList('a'), { instanceOf: RangeError });
});

test('planCpus: the last two usable CPUs; same-cpu runs on the second', (t) => {
  t.deepEqual(planCpus(undefined, [0, 1, 2, 3]), { sameCpu: '3', crossCpu: { server: '2', client: '3' } });
  t.deepEqual(planCpus(undefined, [0]), { sameCpu: '0', crossCpu: null });
  t.deepEqual(planCpus(['1', '0'], [0, 1]), { sameCpu: '0', crossCpu: { server: '1', client: '0' } });
  t.throws(() => planCpus(['5'], [0, 1]), { instanceOf: UsageError });
});

test('options: quick is a subset of thorough, flags narrow it, bad values are usage errors', (t) => {
  const thorough = parseBenchOptions({});
  const quick = parseBenchOptions({ quick: true });
  t.is(thorough.profile, 'thorough');
  t.true(thorough.sockperf);
  t.true(quick.cases.length < thorough.cases.length);
  t.true(quick.cases.every((q) => thorough.cases.some((c) => c.kind === q.kind && c.path === q.path && c.size === q.size && c.pinning === q.pinning)));
  const narrow = parseBenchOptions({ quick: true, paths: 'loopback', kinds: 'rr', 'rr-sizes': '64', rounds: '1' });
  t.true(narrow.cases.length > 0);
  t.true(narrow.cases.every((c) => c.kind === 'rr' && c.path.name === 'loopback' && c.size === 64));
  t.true(narrow.cases.some((c) => c.pinning === 'same-cpu'));
  t.is(narrow.rounds, 1);
  t.throws(() => parseBenchOptions({ paths: 'moon' }), { instanceOf: UsageError });
  t.throws(() => parseBenchOptions({ rounds: '0' }), { instanceOf: UsageError });
  t.throws(() => parseBenchOptions({ 'rr-sizes': '64,big' }), { instanceOf: UsageError });
});

test('integrityProblems: intact runs pass, any disagreement is named', (t) => {
  t.deepEqual(integrityProblems(rrRun(), 'full'), []);
  t.regex(integrityProblems(rrRun({ ok: false }), 'full').join('\n'), /wrong response to message 7/);
  t.regex(integrityProblems(rrRun({ messages: 100, serverMessages: 99 }), 'full').join('\n'), /completed 100 messages, the server answered 99/);
  const stream: LoadgenRun = {
    client: { mode: 'stream', size: 1024, bytesSent: 1000, writes: 1, windowBytes: 900, windowNs: 1, serverClose: 'eof', cpu: { userSec: 0, sysSec: 0, busySecByCpu: [] } },
    serverConn: { mode: 'stream', bytesIn: 999, reads: 1, firstBadOffset: -1, verify: 'sampled' },
    serverSummary: { accepted: 1, failures: 0, spuriousEagain: 0 },
    spuriousEagain: 0,
  };
  t.regex(integrityProblems(stream, 'sampled').join('\n'), /sent 1000 bytes, the server received 999/);
  t.deepEqual(integrityProblems({ ...stream, serverConn: { ...stream.serverConn!, bytesIn: 1000 } }, 'sampled'), []);
  t.regex(integrityProblems({ ...stream, serverConn: { ...stream.serverConn!, bytesIn: 1000 } }, 'full').join('\n'), /compared sampled, not full/);
});

test('accelerationProblems: a fallback to plain TCP is caught from the counters', (t) => {
  const run = rrRun();
  const good = { ...zero(), sockets_inserted: 2n, bytes_redirected: 12800n };
  t.deepEqual(accelerationProblems('accelerated', run, good, 1), []);
  t.regex(accelerationProblems('accelerated', run, zero(), 1).join('\n'), /fell back to plain TCP: the connection was never paired, only 0 of 12800/);
  t.regex(accelerationProblems('accelerated', run, { ...good, bytes_passed: 64n }, 1).join('\n'), /64 bytes went over plain TCP/);
  t.deepEqual(accelerationProblems('plain', run, zero(), 1), []);
  t.regex(accelerationProblems('plain', run, good, 1).join('\n'), /plain run was accelerated/);
  t.deepEqual(accelerationProblems('unix', run, good, 1), []);
});

test('pairingRaced: only a fallback with no other cause is measured again', (t) => {
  const none = { pair_fallback: 0n, insert_fail_full: 0n, insert_fail_other: 0n, skipped_policy: 0n };
  t.false(pairingRaced(none), 'nothing fell back');
  t.true(pairingRaced({ ...none, pair_fallback: 1n }), 'a client that wrote before its server paired');
  t.false(pairingRaced({ ...none, pair_fallback: 1n, insert_fail_full: 1n }), 'a full map is not a race');
  t.false(pairingRaced({ ...none, pair_fallback: 1n, insert_fail_other: 1n }), 'a refused insert is not a race');
  t.false(pairingRaced({ ...none, pair_fallback: 1n, skipped_policy: 1n }), 'a mesh policy refusal is not a race');
});

test('accelerationProblems: a proxy chain must pair and redirect on every hop', (t) => {
  const run = rrRun();
  t.deepEqual(accelerationProblems('accelerated', run, { ...zero(), sockets_inserted: 6n, bytes_redirected: 3n * 12800n }, 3), []);
  // One hop paired, two left to plain TCP: what a one-hop gate would have let through.
  const oneHop = accelerationProblems('accelerated', run, { ...zero(), sockets_inserted: 2n, bytes_redirected: 12800n }, 3).join('\n');
  t.regex(oneHop, /only 2 of 6 sockets of the 3 connections were paired/);
  t.regex(oneHop, /only 12800 of 38400 payload bytes \(×3 connections\) were redirected/);
});

test('the sidecar chain measures rr and stream only, and the daemon gets its mesh', (t) => {
  const opts = parseBenchOptions({ paths: 'sidecar-chain,loopback' });
  const chain = opts.cases.filter((c) => c.path.name === 'sidecar-chain');
  t.true(chain.some((c) => c.kind === 'rr' && c.size === 64 && c.pinning === 'same-cpu'));
  t.true(chain.some((c) => c.kind === 'stream' && c.size === 128 * 1024));
  t.false(chain.some((c) => c.kind === 'connrate'));
  t.true(opts.cases.some((c) => c.kind === 'connrate' && c.path.name === 'loopback'));
  t.is(meshOf(opts.paths), 'istio');
  t.is(meshOf(parseBenchOptions({ paths: 'loopback,pod-to-pod' }).paths), 'none');
});

test('parseSockperfOutput reads the full-RTT summary', (t) => {
  const text = [
    'sockperf: ====> avg-rtt=15.285 (std-dev=4.509)',
    'sockperf: ---> percentile 99.000 =   20.770',
    'sockperf: ---> percentile 50.000 =   14.090',
  ].join('\n');
  t.deepEqual(parseSockperfOutput(text), { p50Us: 14.09, p99Us: 20.77, meanUs: 15.285 });
  t.throws(() => parseSockperfOutput('nothing'), { message: /no p50/ });
});

test('axisScale: four to seven steps of 1, 2 or 5 times a power of ten, up to the first tick above the data', (t) => {
  t.deepEqual(axisScale(51.7), { max: 60, step: 10 });
  t.deepEqual(axisScale(44), { max: 50, step: 10 });
  t.deepEqual(axisScale(40), { max: 40, step: 10 });
  t.deepEqual(axisScale(13), { max: 14, step: 2 });
  t.deepEqual(axisScale(0.7), { max: 0.7, step: 0.1 });
  t.deepEqual(axisScale(0), { max: 1, step: 0.2 });
});

test('progress: plain lines without a terminal, one redrawn bar on a terminal', (t) => {
  const plain: string[] = [];
  const p = new Progress(2, { isTTY: false, write: (s: string) => plain.push(s) });
  p.step('rr loopback');
  p.note('a finding');
  p.finish(false);
  t.deepEqual(plain.slice(0, 2), ['bench: [1/2] rr loopback\n', 'bench: a finding\n']);
  t.regex(plain[2]!, /^bench: stopped after \d+s\n$/);

  const tty: string[] = [];
  const bar = new Progress(4, { isTTY: true, columns: 60, write: (s: string) => tty.push(s) });
  bar.step('one');
  bar.step('two');
  bar.finish(true);
  t.true(tty[0]!.startsWith('\r\x1b[K[') && tty[0]!.includes('1/4 one'));
  t.true(tty[1]!.includes('2/4') && tty[1]!.length <= 60 + 4);
  t.is(tty.at(-1), '\r\x1b[K', 'the bar is cleared, nothing else printed');
});

const crrRun = (over: Partial<{ mode: 'crr' | 'mixed'; messages: number; connections: number; serverMessages: number; accepted: number; bad: number; ok: boolean }> = {}): LoadgenRun => ({
  client: {
    mode: over.mode ?? 'crr',
    size: 64,
    messages: over.messages ?? 100,
    connections: over.connections ?? 100,
    transactions: 90,
    elapsedNs: 1e6,
    latencyNs: { min: 1, p50: 2, p90: 3, p99: 4, p999: 5, max: 6, mean: 2, stddev: 1 },
    histogram: [],
    integrity: { ok: over.ok ?? true, checkedBytes: 12800, firstBadMessage: over.ok === false ? 7 : -1, problem: over.ok === false ? 'no clean EOF after the response' : '' },
  },
  serverSummary: { accepted: over.accepted ?? over.connections ?? 100, messages: over.serverMessages ?? over.messages ?? 100, badMessages: over.bad ?? 0, failures: over.bad ?? 0, spuriousEagain: 0 },
  spuriousEagain: 0,
});

test('integrityProblems: crr and mixed count requests and connections on both ends', (t) => {
  t.deepEqual(integrityProblems(crrRun(), 'sampled'), []);
  t.deepEqual(integrityProblems(crrRun({ mode: 'mixed', messages: 100, connections: 51 }), 'sampled'), []);
  t.regex(integrityProblems(crrRun({ ok: false }), 'sampled').join('\n'), /message 7: no clean EOF after the response/);
  t.regex(integrityProblems(crrRun({ serverMessages: 99 }), 'sampled').join('\n'), /completed 100 messages, the server answered 99/);
  t.regex(integrityProblems(crrRun({ accepted: 101 }), 'sampled').join('\n'), /made 100 connections, the server accepted 101/);
  t.regex(integrityProblems(crrRun({ bad: 1 }), 'sampled').join('\n'), /1 requests that differ/);
});

test('accelerationProblems: crr and mixed must pair every connection; adaptive runs are not held to it', (t) => {
  const run = crrRun({ connections: 10, messages: 10 });
  t.deepEqual(accelerationProblems('accelerated', run, { ...zero(), sockets_inserted: 20n, bytes_redirected: 1280n }, 1), []);
  t.regex(accelerationProblems('accelerated', run, { ...zero(), sockets_inserted: 18n, bytes_redirected: 1280n }, 1).join('\n'), /only 18 of 20 sockets of the 10 connections were paired/);
  t.deepEqual(accelerationProblems('adaptive', run, zero(), 1), []);
});

test('gain kept and adaptive vs the better side, round by round', (t) => {
  // Throughput: plain 10, accelerated 20, adaptive 19.5 -> kept 0.95; latency: plain 10, accelerated 6, adaptive 6.2 -> kept 0.95.
  const plain = { gbps: [10, 10], p50Us: [10, 10] };
  const acc = { gbps: [20, 30], p50Us: [6, 6] };
  const adaptive = { gbps: [19.5, 29], p50Us: [6.2, 6] };
  const kept = gainKeptOf(plain, acc, adaptive);
  t.deepEqual(kept.gbps!.perRound, [0.95, 0.95]);
  t.is(kept.p50Us!.perRound[0]!.toFixed(2), '0.95');
  t.is(kept.p50Us!.perRound[1], 1);
  // A round without a difference has no share to keep.
  t.false('gbps' in gainKeptOf({ gbps: [10] }, { gbps: [10] }, { gbps: [10] }));
  const best = adaptiveVsBestOf('mixed', { tps: [100, 100], p50Us: [10, 10] }, { tps: [90, 120], p50Us: [8, 12] }, { tps: [99, 108], p50Us: [8, 10] });
  t.deepEqual(best.tps!.perRound, [0.99, 0.9]);
  t.deepEqual(best.p50Us!.perRound, [1, 1]);
});

function fakeCase(kind: CaseResult['kind'], size: number | null, ratios: Partial<CaseResult['ratios']>, path = 'loopback'): CaseResult {
  const r = (v: number) => summarizeRatios([v], [1]);
  const wrap = (m: Record<string, number> | undefined) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, r(v as unknown as number)]));
  return {
    id: `${kind}/${path}/${size ?? '-'}/same-cpu`, kind, path, size, pinning: 'same-cpu', port: 20000, plainPort: 20001, pairedPlainAdaptive: false, cpus: { server: '1', client: '1' }, sides: {},
    ratios: {
      acceleratedVsPlain: {},
      adaptiveVsPlain: wrap(ratios.adaptiveVsPlain as unknown as Record<string, number>),
      gainKept: wrap(ratios.gainKept as unknown as Record<string, number>),
      adaptiveVsBest: wrap(ratios.adaptiveVsBest as unknown as Record<string, number>),
    },
  };
}

test('adaptive goals: losers against plain, winners by the gain kept, mixed against the better side', (t) => {
  const n = (v: number) => v as unknown as RatioSummary;
  const cases = [
    fakeCase('crr', 64, { adaptiveVsPlain: { tps: n(0.99) } }),
    fakeCase('stream', 1024, { adaptiveVsPlain: { gbps: n(0.9) } }),
    fakeCase('connrate', null, { adaptiveVsPlain: { connPerSec: n(1.0) } }),
    fakeCase('rr', 64, { gainKept: { p50Us: n(0.98) } }),
    fakeCase('stream', 131072, { gainKept: { gbps: n(0.5) } }),
    fakeCase('mixed', 64, { adaptiveVsBest: { tps: n(0.97) } }),
  ];
  const goals = Object.fromEntries(adaptiveGoals(cases).map((g) => [g.id, g]));
  t.true(goals['adaptive-crr64']!.met);
  t.false(goals['adaptive-stream1k']!.met);
  t.true(goals['adaptive-connrate']!.met);
  t.true(goals['adaptive-rr64-gain']!.met);
  t.false(goals['adaptive-stream128k-gain']!.met);
  t.true(goals['adaptive-mixed64']!.met);
  t.false('adaptive-sidecar-chain-gain' in goals, 'no chain row when the chain was not run');
  // One round each: a point estimate, and no interval to settle it.
  t.true(adaptiveGoals(cases).every((g) => g.interval === null && g.verdict === 'unsettled'));
  const none = adaptiveGoals([]);
  t.true(none.every((g) => g.met === null && g.measured === null && g.verdict === null));
});

test('goal verdicts: met or missed only when the whole interval is on one side of the target', (t) => {
  const rounds = (...perRound: number[]) => summarizeRatios(perRound, perRound.map(() => 1));
  const verdict = (r: RatioSummary) => adaptiveGoals([fakeRounds('crr', 64, { tps: r })]).find((g) => g.id === 'adaptive-crr64')!;
  t.is(verdict(rounds(0.98, 0.99, 1.0, 1.01, 1.02)).verdict, 'met');
  t.is(verdict(rounds(0.9, 0.92, 0.93, 0.94, 0.96)).verdict, 'missed');
  // Median 0.99 meets the target, but one round at 0.6 leaves the 93.75% interval across it.
  const noisy = verdict(rounds(0.6, 0.98, 0.99, 1.0, 1.45));
  t.true(noisy.met);
  t.is(noisy.verdict, 'unsettled');
  t.deepEqual([noisy.interval!.low, noisy.interval!.high], [0.6, 1.45]);
  t.is(verdictOf(null, () => true), 'unsettled');
});

function fakeRounds(kind: CaseResult['kind'], size: number | null, adaptiveVsPlain: Record<string, RatioSummary>): CaseResult {
  return { ...fakeCase(kind, size, {}), ratios: { acceleratedVsPlain: {}, adaptiveVsPlain, gainKept: {}, adaptiveVsBest: {} } };
}

test('options: every kind runs three TCP sides; quick has the cases the adaptive goals need; warm-up at most 2 s', (t) => {
  const quick = parseBenchOptions({ quick: true });
  const has = (kind: string, size: number | null) => quick.cases.some((c) => c.kind === kind && c.size === size && c.path.name === 'loopback' && c.pinning === 'same-cpu');
  for (const [kind, size] of [['crr', 64], ['stream', 1024], ['rr', 64], ['stream', 131072], ['mixed', 64], ['connrate', null]] as const) t.true(has(kind, size), `${kind} ${size}`);
  t.false(quick.cases.some((c) => (c.kind === 'crr' || c.kind === 'mixed') && c.path.name !== 'loopback'));
  t.deepEqual(quick.adaptiveWarmup, { ms: 2000, connections: 200 });
  t.is(parseBenchOptions({ quick: true, 'adaptive-warmup-ms': '300' }).adaptiveWarmup.ms, 300);
  t.throws(() => parseBenchOptions({ 'adaptive-warmup-ms': '2001' }), { instanceOf: UsageError });
  t.false(parseBenchOptions({ paths: 'sidecar-chain' }).cases.some((c) => c.kind === 'crr' || c.kind === 'mixed'));
  t.is(parseBenchOptions({ 'duration-ms': '50' }).durationMs.crr, 50);
});

test('ports: below the ephemeral range, shuffled, never an avoided one', (t) => {
  t.deepEqual(ephemeralRange('32768\t60999\n'), { lo: 32768, hi: 60999 });
  t.throws(() => ephemeralRange('x'), { instanceOf: RangeError });
  const ports = candidatePorts(FIRST_PORT + 10, new Set([FIRST_PORT + 3]), () => 0.5);
  t.is(ports.length, 9);
  t.false(ports.includes(FIRST_PORT + 3));
  t.deepEqual([...ports].sort((a, b) => a - b), [0, 1, 2, 4, 5, 6, 7, 8, 9].map((i) => FIRST_PORT + i));
});

test('settle: reads the TCP alloc count, waits until it is back near the baseline, gives up at the deadline', async (t) => {
  t.is(parseTcpAlloc('sockets: used 11\nTCP: inuse 1 orphan 0 tw 35613 alloc 7 mem 195\nUDP: inuse 0 mem 0\n'), 7);
  t.throws(() => parseTcpAlloc('UDP: inuse 0'), { message: /no TCP alloc/ });
  const counts = [500, 300, 100 + SETTLE_SLACK];
  const done = await settle(100, () => counts.shift() ?? 100);
  t.true(done.settled);
  t.is(counts.length, 0, 'polled until the count came down');
  t.true((await settle(100, () => 100 + SETTLE_SLACK)).settled);
});

test('roundRuns: plain and adaptive of a crr, connrate or mixed case take turns, in the place and order of whichever comes first', (t) => {
  const loopback = parseBenchOptions({ quick: true }).paths.find((p) => p.name === 'loopback')!;
  const show = (kind: CaseSpec['kind'], round: number) => roundRuns({ kind, path: loopback }, round).map((r) => (r.pair ? `pair(${r.side} first)` : r.side));
  t.deepEqual(show('crr', 1), ['pair(plain first)', 'accelerated']);
  t.deepEqual(show('crr', 2), ['pair(adaptive first)', 'accelerated']);
  t.deepEqual(show('connrate', 3), ['pair(plain first)', 'accelerated']);
  t.deepEqual(show('mixed', 4), ['pair(adaptive first)', 'accelerated']);
  // Other kinds: every side alone, A B C (D), then reversed.
  t.deepEqual(show('rr', 1), ['plain', 'accelerated', 'adaptive', 'unix']);
  t.deepEqual(show('stream', 2), ['unix', 'adaptive', 'accelerated', 'plain']);
});
