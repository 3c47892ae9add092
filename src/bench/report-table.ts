/**
 * The human report of `sockaccel bench`: one table per kind of case, with
 * the ratios a reader came for, the goals, the sockperf cross-check and how
 * it was measured.
 */
import { calibrationSnippet } from './calibration';
import type { BenchResults, CaseResult, GoalResult, GoalVerdict, Side } from './results';
import type { RatioSummary, RoundSummary } from './stats';

function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function fixed(value: number): string {
  const abs = Math.abs(value);
  return value.toFixed(abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
}

/** "17.8 ±2%": the median, and half the min..max range over rounds. */
function withSpread(s: RoundSummary | undefined): string {
  if (!s) return '-';
  const pct = (s.spread.relative / 2) * 100;
  return `${fixed(s.median)} ±${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)}%`;
}

function ratio(r: RatioSummary | undefined): string {
  return r ? `${r.median.toFixed(2)}x` : '-';
}

function sizeLabel(bytes: number | null): string {
  if (bytes === null) return '-';
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

const metric = (c: CaseResult, side: Side, name: string) => c.sides[side]?.[name];

/** The note for a section whose plain and adaptive runs took turns. */
const turns = (cases: readonly CaseResult[]) => (cases.some((c) => c.pairedPlainAdaptive) ? '; plain and adaptive on take turns, see Method' : '');

const VERDICT_LABEL: Readonly<Record<GoalVerdict | 'none', string>> = { met: 'met  ', missed: 'MISS ', unsettled: 'noise', none: 'n/a  ' };

function goalMeasured(g: GoalResult): string {
  if (g.measured === null) return 'not measured';
  if (Number.isInteger(g.measured) && !g.interval) return String(g.measured);
  const interval = g.interval ? `, ${Math.round(g.interval.confidence * 100)}% ${g.interval.low.toFixed(2)}..${g.interval.high.toFixed(2)}` : ', one round: no interval';
  return `${g.measured.toFixed(2)}x${interval}`;
}

/** "0.98" share of the gain kept; "-" when the case had no gain or loss to share. */
function share(r: RatioSummary | undefined): string {
  return r ? r.median.toFixed(2) : '-';
}

/** Connections of the adaptive runs: left plain by a decision / redirected (socket pairs), and the learner's verdict. */
function adaptiveCell(c: CaseResult): string {
  const a = c.adaptive;
  if (!a) return '-';
  const verdicts = [...new Set(a.decisions.map((d) => (d.reason === 'none' ? `${d.verdict}?` : `${d.verdict} (${d.reason})`)))];
  return `${a.plainConnections}/${a.pairedConnections} ${verdicts.length ? verdicts.join(', ') : 'no decision'}`;
}

/**
 * The three TCP sides of one headline metric, the Unix line where there is
 * one, and the ratios: adaptive off / plain, adaptive on / plain, and the
 * share of the gain (or loss) adaptive on kept.
 */
function sidesTable(cases: readonly CaseResult[], name: string, unit: string, first: [string, (c: CaseResult) => string], extra: [string, (c: CaseResult) => string][] = []): string {
  const withUnix = cases.some((c) => c.sides.unix);
  const rows = cases.map((c) => [
    c.path,
    first[1](c),
    c.pinning,
    withSpread(metric(c, 'plain', name)),
    withSpread(metric(c, 'accelerated', name)),
    withSpread(metric(c, 'adaptive', name)),
    ...(withUnix ? [withSpread(metric(c, 'unix', name))] : []),
    ratio(c.ratios.acceleratedVsPlain[name]),
    ratio(c.ratios.adaptiveVsPlain[name]),
    share(c.ratios.gainKept[name]),
    ...(withUnix ? [ratio(c.ratios.acceleratedVsUnix?.[name])] : []),
    ...extra.map(([, cell]) => cell(c)),
    adaptiveCell(c),
  ]);
  return renderTable(
    [
      'path', first[0], 'pinning', `plain ${unit}`, `adaptive off ${unit}`, `adaptive on ${unit}`, ...(withUnix ? [`unix ${unit}`] : []),
      'off/plain', 'on/plain', 'gain kept', ...(withUnix ? ['off/unix'] : []), ...extra.map(([h]) => h), 'on: conns plain/accel, decision',
    ],
    rows,
  );
}

const three = (c: CaseResult, name: string, scale = 1, suffix = '') =>
  (['plain', 'accelerated', 'adaptive'] as const).map((s) => `${fixed((metric(c, s, name)?.median ?? NaN) / scale)}${suffix}`).join(' / ');

const size: [string, (c: CaseResult) => string] = ['size', (c) => sizeLabel(c.size)];

function rrTable(cases: readonly CaseResult[]): string {
  return sidesTable(cases, 'p50Us', 'p50 µs', size, [
    ['p99 µs plain/off/on', (c) => three(c, 'p99Us')],
    ['tps plain/off/on', (c) => three(c, 'tps', 1e3, 'k')],
  ]);
}

function streamTable(cases: readonly CaseResult[]): string {
  return sidesTable(cases, 'gbps', 'Gbit/s', ['write', (c) => sizeLabel(c.size)], [['CPU s/GB plain/off/on', (c) => three(c, 'cpuSecPerGB')]]);
}

function connTable(cases: readonly CaseResult[]): string {
  return sidesTable(cases, 'connPerSec', 'conn/s', ['cycle', () => 'connect+accept+close']);
}

function requestsTable(cases: readonly CaseResult[]): string {
  return sidesTable(cases, 'tps', 'req/s', size, [
    ['p50 µs plain/off/on', (c) => three(c, 'p50Us')],
    ['p99 µs plain/off/on', (c) => three(c, 'p99Us')],
  ]);
}

/** Both tools' accelerated / plain: the speed-up should agree even when the machine drifts. */
function speedups(checks: NonNullable<BenchResults['sockperf']>): string {
  const plain = checks.find((c) => c.side === 'plain');
  const acc = checks.find((c) => c.side === 'accelerated');
  if (!plain || !acc) return '';
  return `\naccelerated / plain p50: sockperf ${(acc.sockperf.p50Us / plain.sockperf.p50Us).toFixed(2)}x, loadgen ${(acc.loadgen.p50Us / plain.loadgen.p50Us).toFixed(2)}x`;
}

export function formatReport(r: BenchResults, files: { json: string; chart: string }): string {
  const of = (kind: CaseResult['kind']) => r.cases.filter((c) => c.kind === kind);
  const cross = r.environment.cpuSets.crossCpu;
  const sections: string[] = [
    `sockaccel bench (${r.profile}, ${r.elapsedSec.toFixed(0)} s): kernel ${r.environment.kernel}, ${r.environment.cpuModel}, ${r.environment.onlineCpus} CPUs`,
    `CPUs (taskset -c): same-cpu ${r.environment.cpuSets.sameCpu}${cross ? `; cross-cpu server ${cross.server}, client ${cross.client}` : ''}`,
    `Method: ${r.method.rounds} rounds; ${r.method.order}. Each run: ${r.method.warmupMs} ms warm-up, then ${Object.entries(r.method.durationMs).map(([k, v]) => `${k} ${v} ms`).join(', ')}; adaptive warm-up per case: at most ${r.method.adaptiveWarmup.ms} ms or ${r.method.adaptiveWarmup.connections} connections.`,
    `Values: median over rounds ±half the min..max range; ratios: median of per-round ratios. Sides: plain TCP; adaptive off (everything that pairs is redirected); adaptive on (the learner's decisions apply); Unix domain socket. Gain kept: (on − plain) / (off − plain).`,
  ];
  if (of('rr').length) sections.push(`Request/response round trip (${r.method.loadGenerator.split(' (')[0]} rr)\n${rrTable(of('rr'))}`);
  if (of('stream').length) sections.push(`Streaming throughput (client writes, server reads and checks samples of every read)\n${streamTable(of('stream'))}`);
  if (of('connrate').length) sections.push(`Connection setup rate (the client connects, the server accepts and closes, the client sees EOF${turns(of('connrate'))})\n${connTable(of('connrate'))}`);
  if (of('crr').length) sections.push(`A connection per request (connect, request, response, the server closes; both checked${turns(of('crr'))})\n${requestsTable(of('crr'))}`);
  if (of('mixed').length) sections.push(`Mixed service (alternately a request on a keep-alive connection and one on a fresh connection, one port${turns(of('mixed'))})\n${requestsTable(of('mixed'))}`);
  if (r.sockperf?.length) {
    sections.push(
      `Cross-check: sockperf ping-pong --full-rtt, 64 B, loopback, same CPU\n${renderTable(
        ['side', '', '', 'sockperf p50 µs', 'loadgen p50 µs', 'loadgen/sockperf'],
        r.sockperf.map((s) => [s.side, '', '', fixed(s.sockperf.p50Us), fixed(s.loadgen.p50Us), `${s.p50Ratio.toFixed(2)}x`]),
      )}${speedups(r.sockperf)}`,
    );
  }
  sections.push(
    `Goals (met or MISS: the interval of the median over the rounds, 90% or with fewer than 5 rounds their range, lies on one side of the target; noise: it straddles the target, and more rounds or a quieter machine decide)\n${r.goals
      .map((g) => `  ${VERDICT_LABEL[g.verdict ?? 'none']}  ${g.description}: ${goalMeasured(g)} (target ${g.target})`)
      .join('\n')}`,
  );
  const snippet = calibrationSnippet(r.calibration);
  if (snippet) {
    sections.push(`Calibration for the adaptive policy, from this run (${r.calibration.method}); in the daemon's config file:\n${snippet}`);
  }
  const eagain = r.observations.spuriousEagain;
  if (eagain.accelerated + eagain.adaptive + eagain.plain + eagain.unix > 0) {
    sections.push(
      `Observed: blocking recv() returned EAGAIN ${eagain.accelerated + eagain.adaptive} times on accelerated sockets (adaptive off ${eagain.accelerated}, on ${eagain.adaptive}; plain TCP ${eagain.plain}, Unix ${eagain.unix}); ` +
        'on this kernel an accelerated socket waiting for data returns EAGAIN once when the peer closes. loadgen retries; applications that treat it as an error would not.',
    );
  }
  const unsettled = Object.entries(r.observations.settling).filter(([, v]) => v.unsettled > 0);
  if (unsettled.length > 0) {
    sections.push(
      `Observed: after ${unsettled.map(([side, v]) => `${v.unsettled} ${side} runs`).join(', ')} the machine's allocated TCP sockets were not back to their level before the run within 3 s (other load on the machine, or sockets freed late); the next run went ahead.`,
    );
  }
  const retried = r.observations.pairingRetries;
  if (retried.length > 0) {
    sections.push(
      `Observed: ${retried.length} accelerated runs measured again (${[...new Set(retried)].join(', ')}): a connection wrote before its server end had paired and fell back to plain TCP as a whole, bytes exact, so the run had measured plain TCP.`,
    );
  }
  sections.push(`Integrity gate (before measuring)\n${r.integrityGate.map((g) => g.checks.map((c) => `  ${g.path}: ${c}`).join('\n')).join('\n')}`);
  sections.push(`Results: ${files.json}\nChart:   ${files.chart}`);
  return `${sections.join('\n\n')}\n`;
}
