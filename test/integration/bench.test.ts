/**
 * `sockaccel bench` end to end, from the built CLI, with extra-small
 * settings: the JSON schema, the chart, the integrity gate (an accelerated
 * side that is not accelerated must fail loudly) and cleanup after success
 * and failure (bench-cleanup.test.ts: after signals, broken pipes and
 * SIGKILL). No timing thresholds: the numbers are not under test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { assertCleanedUp, ONE_SHORT_ROUND, serially, SMALL, startBench, tempDir } from '../helpers/bench';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test);

/** The adaptive side's warm-up, shortened: the tests check the plumbing, not the learner's verdicts. */
const SHORT_ADAPTIVE_WARMUP = ['--adaptive-warmup-ms', '150'];

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The parts of results.json a reader relies on, with their types. */
function checkSchema(t: ExecutionContext, r: Record<string, any>, rounds: number): void {
  t.is(r.schemaVersion, 4);
  t.is(typeof r.sockaccelVersion, 'string');
  t.is(r.profile, 'quick');
  t.false(Number.isNaN(Date.parse(r.startedAt)));
  t.true(isNumber(r.elapsedSec));
  t.is(r.environment.kernel, os.release());
  t.is(typeof r.environment.cpuModel, 'string');
  t.true(isNumber(r.environment.onlineCpus));
  t.is(typeof r.environment.cpuSets.sameCpu, 'string');
  for (const key of ['loadGenerator', 'order', 'integrity', 'cpuAccounting', 'acceleratedSide']) t.is(typeof r.method[key], 'string', `method.${key}`);
  t.is(r.method.rounds, rounds);
  for (const kind of ['rr', 'stream', 'connrate', 'crr', 'mixed']) t.true(isNumber(r.method.durationMs[kind]));
  t.true(isNumber(r.method.adaptiveWarmup.ms) && r.method.adaptiveWarmup.ms <= 2000);
  t.is(r.method.adaptiveWarmup.connections, 200);
  t.deepEqual(r.paths.map((p: { name: string }) => p.name), ['loopback', 'dual-stack', 'pod-to-pod', 'sidecar-chain']);
  t.is(r.integrityGate.length, r.paths.length);
  for (const gate of r.integrityGate) t.true(gate.checks.length >= 3 && gate.checks.every((c: unknown) => typeof c === 'string'));

  const headline: Record<string, string> = { rr: 'p50Us', stream: 'gbps', connrate: 'connPerSec', crr: 'tps', mixed: 'tps' };
  t.deepEqual([...new Set(r.cases.map((c: { kind: string }) => c.kind))].sort(), ['connrate', 'crr', 'mixed', 'rr', 'stream']);
  // One fixed port per case, each its own service; plain runs on ports of their own.
  const ports = r.cases.flatMap((c: { port: number; plainPort: number }) => [c.port, c.plainPort]);
  t.true(ports.every((p: unknown) => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536));
  t.is(new Set(ports).size, ports.length);
  // Plain and adaptive on take turns where the goal is within 3% of plain.
  for (const c of r.cases) t.is(c.pairedPlainAdaptive, ['crr', 'connrate', 'mixed'].includes(c.kind), c.id);
  for (const c of r.cases) {
    const metric = headline[c.kind]!;
    t.is(typeof c.id, 'string');
    t.true(c.size === null || isNumber(c.size), c.id);
    t.true(['same-cpu', 'cross-cpu'].includes(c.pinning), c.id);
    t.is(typeof c.cpus.server, 'string');
    t.is(typeof c.cpus.client, 'string');
    for (const side of ['plain', 'accelerated', 'adaptive']) {
      const s = c.sides[side][metric];
      t.true(isNumber(s.median) && s.median > 0, `${c.id} ${side} median`);
      t.true(isNumber(s.spread.min) && isNumber(s.spread.max) && isNumber(s.spread.relative), `${c.id} ${side} spread`);
      t.is(s.rounds.length, rounds);
    }
    t.is(c.ratios.acceleratedVsPlain[metric].perRound.length, rounds, c.id);
    t.true(isNumber(c.ratios.acceleratedVsPlain[metric].median), c.id);
    t.true(isNumber(c.ratios.adaptiveVsPlain[metric].median), `${c.id} adaptive / plain`);
    t.true(isNumber(c.ratios.adaptiveVsBest[metric].median), `${c.id} adaptive / best`);
    t.true(c.ratios.gainKept[metric] === undefined || isNumber(c.ratios.gainKept[metric].median), `${c.id} gain kept`);
    // The adaptive side: a warm-up on the case's port, then what its runs did with their connections.
    const a = c.adaptive;
    t.true(a.warmup.connections >= 1 && a.warmup.connections <= 200, `${c.id} warm-up connections`);
    t.true(isNumber(a.warmup.elapsedMs) && isNumber(a.warmup.decisionWaitMs));
    for (const d of a.decisions) {
      t.true(d.service.includes(`:${c.port}`), `${c.id} decision for its own port: ${d.service}`);
      t.true(['accelerate', 'plain'].includes(d.verdict));
    }
    for (const k of ['pairedConnections', 'plainConnections', 'exploredConnections']) t.true(Number.isInteger(a[k]), `${c.id} ${k}`);
    if (['rr', 'stream'].includes(c.kind)) t.true(isNumber(c.ratios.acceleratedVsUnix[metric].median), `${c.id} has a Unix socket comparison`);
    if (['rr', 'stream'].includes(c.kind) && c.path === 'loopback') t.true(isNumber(c.sides.unix[metric].median), `${c.id} unix`);
  }
  t.true(r.goals.length >= 11);
  for (const id of ['adaptive-crr64', 'adaptive-rr64-gain', 'adaptive-stream128k-gain', 'adaptive-mixed64', 'adaptive-sidecar-chain-gain']) {
    t.true(r.goals.some((g: { id: string }) => g.id === id), id);
  }
  // The calibration: every constant named, the ones this run had the cases for are integers.
  for (const k of ['adaptiveConnectionCostNs', 'adaptiveTurnSavingNs', 'adaptiveBurstMessageCostNs', 'adaptiveByteSavingPs']) {
    t.true(k in r.calibration.constants, k);
  }
  t.true(Number.isInteger(r.calibration.constants.adaptiveTurnSavingNs));
  t.true(Number.isInteger(r.calibration.constants.adaptiveConnectionCostNs));
  t.is(typeof r.calibration.method, 'string');
  for (const g of r.goals) {
    t.is(typeof g.description, 'string');
    t.true(g.measured === null || isNumber(g.measured));
    t.true(g.met === null || typeof g.met === 'boolean');
    t.true(g.verdict === null || ['met', 'missed', 'unsettled'].includes(g.verdict), `${g.id} verdict ${g.verdict}`);
    if (g.interval) t.true(g.interval.low <= g.measured && g.measured <= g.interval.high, `${g.id}: the median lies in its interval`);
  }
  for (const side of ['plain', 'accelerated', 'adaptive', 'unix']) t.true(isNumber(r.observations.spuriousEagain[side]));
  t.true(Array.isArray(r.observations.pairingRetries));
}

/** A minimal XML check: one <svg> root in the SVG namespace, every tag closed in order, bars and labels present. */
function checkSvg(t: ExecutionContext, svg: string): void {
  t.true(svg.startsWith('<?xml'), 'XML declaration');
  const body = svg.replace(/^<\?xml[^>]*\?>\s*/, '');
  t.regex(body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+"/);
  const stack: string[] = [];
  let elements = 0;
  for (const m of body.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    elements++;
    if (closing) t.is(stack.pop(), name, `closing </${name}>`);
    else if (!selfClosing) stack.push(name!);
  }
  t.deepEqual(stack, [], 'every element closed');
  t.true(elements > 20);
  t.true((body.match(/<rect /g) ?? []).length > 8, 'bars');
  t.regex(body, /Round trip p50/);
  t.regex(body, /Throughput by write size/);
  t.notRegex(body, /NaN|undefined/);
}

privileged('bench --quick end to end: JSON on stdout and in results.json, a valid chart, sockperf beside loadgen, the sidecar chain, nothing left behind', async (t) => {
  const dir = tempDir(t);
  const out = path.join(dir, 'copy.json');
  const { code, stdout, stderr } = await serially(() => startBench(t, [...SMALL, ...ONE_SHORT_ROUND, ...SHORT_ADAPTIVE_WARMUP, '--sockperf', '--json', '--out-dir', dir, '--out', out]).done);
  t.is(code, 0, stderr);
  const results = JSON.parse(stdout);
  checkSchema(t, results, 1);
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')), results);
  t.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')), results);
  // The chain's gate counted every hop: app -> sidecar -> sidecar -> app is three connections.
  const chain = results.integrityGate.find((g: { path: string }) => g.path === 'sidecar-chain');
  t.regex(chain.checks.join('\n'), /6 sockets paired; \d+ bytes redirected across 3 connections, 0 over plain TCP/);
  t.true(results.cases.some((c: { id: string }) => c.id === 'rr/sidecar-chain/64/same-cpu'), 'the chain measured');
  t.is(results.sockperf.length, 2);
  for (const s of results.sockperf) t.true(isNumber(s.sockperf.p50Us) && isNumber(s.loadgen.p50Us) && isNumber(s.p50Ratio));
  checkSvg(t, fs.readFileSync(path.join(dir, 'chart.svg'), 'utf8'));
  t.regex(stderr, /bench: \[\d+\/\d+\] round 1\/1/, 'plain progress lines when stderr is not a terminal');
  assertCleanedUp(t, stderr);
});

privileged('the table is the default output', async (t) => {
  const dir = tempDir(t);
  const small = [...SMALL, ...ONE_SHORT_ROUND, ...SHORT_ADAPTIVE_WARMUP, '--paths', 'loopback', '--kinds', 'rr,connrate,crr,mixed'];
  const { code, stdout, stderr } = await serially(() => startBench(t, [...small, '--out-dir', dir]).done);
  t.is(code, 0, stderr);
  t.regex(stdout, /Request\/response round trip/);
  t.regex(stdout, /loopback\s+64 B\s+same-cpu/);
  t.regex(stdout, /plain p50 µs\s+adaptive off p50 µs\s+adaptive on p50 µs/);
  t.regex(stdout, /Connection setup rate/);
  t.regex(stdout, /A connection per request/);
  t.regex(stdout, /Mixed service/);
  // The setup cost comes from the connection setup rate, the turn saving from the 64 B round trip.
  t.regex(stdout, /Calibration for the adaptive policy[^\n]*\n\{\n  "adaptiveConnectionCostNs": -?\d+,\n  "adaptiveTurnSavingNs": -?\d+\n\}/);
  t.regex(stdout, new RegExp(`kernel ${os.release().replace(/\./g, '\\.')}`));
  t.true(fs.existsSync(path.join(dir, 'chart.svg')));
  assertCleanedUp(t, stderr);
});

privileged('integrity gate: an accelerated side that is not accelerated fails loudly, with no numbers', async (t) => {
  const dir = tempDir(t);
  // The daemon's own port filter leaves every bench connection plain TCP.
  const args = [...SMALL, ...ONE_SHORT_ROUND, '--paths', 'loopback', '--kinds', 'rr', '--include-ports=1', '--out-dir', dir];
  const { code, stdout, stderr } = await serially(() => startBench(t, args).done);
  t.is(code, 76, stderr);
  t.regex(stderr, /INTEGRITY FAILURE: rr loopback 64 B same-cpu accelerated: the accelerated run fell back to plain TCP: the connection was never paired/);
  // The counters name the cause: the client's handshake was skipped for its port.
  t.regex(stderr, /skipped_port \+1/);
  t.is(stdout, '');
  t.false(fs.existsSync(path.join(dir, 'results.json')));
  assertCleanedUp(t, stderr);
});
