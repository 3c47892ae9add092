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

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The parts of results.json a reader relies on, with their types. */
function checkSchema(t: ExecutionContext, r: Record<string, any>, rounds: number): void {
  t.is(r.schemaVersion, 1);
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
  for (const kind of ['rr', 'stream', 'connrate']) t.true(isNumber(r.method.durationMs[kind]));
  t.deepEqual(r.paths.map((p: { name: string }) => p.name), ['loopback', 'dual-stack', 'pod-to-pod', 'sidecar-chain']);
  t.is(r.integrityGate.length, r.paths.length);
  for (const gate of r.integrityGate) t.true(gate.checks.length >= 3 && gate.checks.every((c: unknown) => typeof c === 'string'));

  const headline: Record<string, string> = { rr: 'p50Us', stream: 'gbps', connrate: 'connPerSec' };
  t.deepEqual([...new Set(r.cases.map((c: { kind: string }) => c.kind))].sort(), ['connrate', 'rr', 'stream']);
  for (const c of r.cases) {
    const metric = headline[c.kind]!;
    t.is(typeof c.id, 'string');
    t.true(c.size === null || isNumber(c.size), c.id);
    t.true(['same-cpu', 'cross-cpu'].includes(c.pinning), c.id);
    t.is(typeof c.cpus.server, 'string');
    t.is(typeof c.cpus.client, 'string');
    for (const side of ['plain', 'accelerated']) {
      const s = c.sides[side][metric];
      t.true(isNumber(s.median) && s.median > 0, `${c.id} ${side} median`);
      t.true(isNumber(s.spread.min) && isNumber(s.spread.max) && isNumber(s.spread.relative), `${c.id} ${side} spread`);
      t.is(s.rounds.length, rounds);
    }
    t.is(c.ratios.acceleratedVsPlain[metric].perRound.length, rounds, c.id);
    t.true(isNumber(c.ratios.acceleratedVsPlain[metric].median), c.id);
    if (c.kind !== 'connrate') t.true(isNumber(c.ratios.acceleratedVsUnix[metric].median), `${c.id} has a Unix socket comparison`);
    if (c.kind !== 'connrate' && c.path === 'loopback') t.true(isNumber(c.sides.unix[metric].median), `${c.id} unix`);
  }
  t.true(r.goals.length >= 5);
  for (const g of r.goals) {
    t.is(typeof g.description, 'string');
    t.true(g.measured === null || isNumber(g.measured));
    t.true(g.met === null || typeof g.met === 'boolean');
  }
  for (const side of ['plain', 'accelerated', 'unix']) t.true(isNumber(r.observations.spuriousEagain[side]));
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
  const { code, stdout, stderr } = await serially(() => startBench(t, [...SMALL, ...ONE_SHORT_ROUND, '--sockperf', '--json', '--out-dir', dir, '--out', out]).done);
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
  const small = [...SMALL, ...ONE_SHORT_ROUND, '--paths', 'loopback', '--kinds', 'rr'];
  const { code, stdout, stderr } = await serially(() => startBench(t, [...small, '--out-dir', dir]).done);
  t.is(code, 0, stderr);
  t.regex(stdout, /Request\/response round trip/);
  t.regex(stdout, /loopback\s+64 B\s+same-cpu/);
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
