/**
 * The human report of `sockaccel bench`: one table per kind of case, with
 * the ratios a reader came for, the goals, the sockperf cross-check and how
 * it was measured.
 */
import type { BenchResults, CaseResult, Side } from './results';
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

function rrTable(cases: readonly CaseResult[]): string {
  const rows = cases.map((c) => [
    c.path,
    sizeLabel(c.size),
    c.pinning,
    withSpread(metric(c, 'plain', 'p50Us')),
    withSpread(metric(c, 'accelerated', 'p50Us')),
    withSpread(metric(c, 'unix', 'p50Us')),
    ratio(c.ratios.acceleratedVsPlain.p50Us),
    ratio(c.ratios.acceleratedVsUnix?.p50Us),
    `${fixed(metric(c, 'plain', 'p99Us')?.median ?? NaN)} / ${fixed(metric(c, 'accelerated', 'p99Us')?.median ?? NaN)}`,
    `${fixed((metric(c, 'plain', 'tps')?.median ?? NaN) / 1e3)}k / ${fixed((metric(c, 'accelerated', 'tps')?.median ?? NaN) / 1e3)}k`,
  ]);
  return renderTable(
    ['path', 'size', 'pinning', 'plain p50 µs', 'accel p50 µs', 'unix p50 µs', 'accel/plain', 'accel/unix', 'p99 µs plain/accel', 'tps plain/accel'],
    rows,
  );
}

function streamTable(cases: readonly CaseResult[]): string {
  const rows = cases.map((c) => [
    c.path,
    sizeLabel(c.size),
    c.pinning,
    withSpread(metric(c, 'plain', 'gbps')),
    withSpread(metric(c, 'accelerated', 'gbps')),
    withSpread(metric(c, 'unix', 'gbps')),
    ratio(c.ratios.acceleratedVsPlain.gbps),
    ratio(c.ratios.acceleratedVsUnix?.gbps),
    `${fixed(metric(c, 'plain', 'cpuSecPerGB')?.median ?? NaN)} / ${fixed(metric(c, 'accelerated', 'cpuSecPerGB')?.median ?? NaN)}`,
  ]);
  return renderTable(
    ['path', 'write', 'pinning', 'plain Gbit/s', 'accel Gbit/s', 'unix Gbit/s', 'accel/plain', 'accel/unix', 'CPU s/GB plain/accel'],
    rows,
  );
}

function connTable(cases: readonly CaseResult[]): string {
  const rows = cases.map((c) => [
    c.path,
    'connect+accept+close',
    c.pinning,
    withSpread(metric(c, 'plain', 'connPerSec')),
    withSpread(metric(c, 'accelerated', 'connPerSec')),
    ratio(c.ratios.acceleratedVsPlain.connPerSec),
  ]);
  return renderTable(['path', 'cycle', 'pinning', 'plain conn/s', 'accel conn/s', 'accel/plain'], rows);
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
    `Method: ${r.method.rounds} rounds; ${r.method.order}. Each run: ${r.method.warmupMs} ms warm-up, then rr ${r.method.durationMs.rr} ms, stream ${r.method.durationMs.stream} ms, connrate ${r.method.durationMs.connrate} ms.`,
    `Values: median over rounds ±half the min..max range; ratios: median of per-round ratios (accelerated / plain TCP, accelerated / Unix domain socket).`,
  ];
  if (of('rr').length) sections.push(`Request/response round trip (${r.method.loadGenerator.split(' (')[0]} rr)\n${rrTable(of('rr'))}`);
  if (of('stream').length) sections.push(`Streaming throughput (client writes, server reads and checks samples of every read)\n${streamTable(of('stream'))}`);
  if (of('connrate').length) sections.push(`Connection setup rate (the client connects, the server accepts and closes, the client sees EOF)\n${connTable(of('connrate'))}`);
  if (r.sockperf?.length) {
    sections.push(
      `Cross-check: sockperf ping-pong --full-rtt, 64 B, loopback, same CPU\n${renderTable(
        ['side', '', '', 'sockperf p50 µs', 'loadgen p50 µs', 'loadgen/sockperf'],
        r.sockperf.map((s) => [s.side, '', '', fixed(s.sockperf.p50Us), fixed(s.loadgen.p50Us), `${s.p50Ratio.toFixed(2)}x`]),
      )}${speedups(r.sockperf)}`,
    );
  }
  sections.push(
    `Goals\n${r.goals
      .map((g) => `  ${g.met === null ? 'n/a ' : g.met ? 'met ' : 'MISS'}  ${g.description}: ${g.measured === null ? 'not measured' : Number.isInteger(g.measured) ? g.measured : `${g.measured.toFixed(2)}x`} (target ${g.target})`)
      .join('\n')}`,
  );
  const eagain = r.observations.spuriousEagain;
  if (eagain.accelerated + eagain.plain + eagain.unix > 0) {
    sections.push(
      `Observed: blocking recv() returned EAGAIN ${eagain.accelerated} times on accelerated sockets (plain TCP ${eagain.plain}, Unix ${eagain.unix}); ` +
        'on this kernel an accelerated socket waiting for data returns EAGAIN once when the peer closes. loadgen retries; applications that treat it as an error would not.',
    );
  }
  sections.push(`Integrity gate (before measuring)\n${r.integrityGate.map((g) => g.checks.map((c) => `  ${g.path}: ${c}`).join('\n')).join('\n')}`);
  sections.push(`Results: ${files.json}\nChart:   ${files.chart}`);
  return `${sections.join('\n\n')}\n`;
}
