/**
 * chart.svg: two grouped bar charts, RTT (p50) by message size and
 * throughput by write size, plain TCP vs accelerated (adaptive off and on) vs Unix domain socket,
 * each bar with a whisker over the rounds' min..max. Hand-written SVG: a
 * few rectangles and lines, no chart library.
 */
import type { BenchResults, CaseResult, Side } from './results';

const WIDTH = 960;
const HEIGHT = 470;
const PANEL = { top: 70, height: 290, gap: 60, left: 70, right: 20 };
const SERIES: readonly { side: Side; label: string; color: string }[] = [
  { side: 'plain', label: 'plain TCP', color: '#9e9e9e' },
  { side: 'accelerated', label: 'sockaccel, adaptive off', color: '#1f77b4' },
  { side: 'adaptive', label: 'sockaccel, adaptive on', color: '#2ca02c' },
  { side: 'unix', label: 'Unix domain socket', color: '#ff7f0e' },
];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(content)}</text>`;
}

/**
 * A value axis for data up to `max`: a tick step of 1, 2 or 5 times a power
 * of ten giving four to seven intervals, and the first tick at or above `max`.
 */
export function axisScale(max: number): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 0.2 };
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  // The nice step nearest to a fifth of the range, on a log scale.
  const step = [1, 2, 5, 10].map((m) => m * power).reduce((best, v) => (Math.abs(Math.log(v / rough)) < Math.abs(Math.log(best / rough)) ? v : best));
  return { max: Number((Math.ceil(max / step - 1e-9) * step).toPrecision(12)), step };
}

interface Bar {
  readonly series: (typeof SERIES)[number];
  readonly value: number;
  readonly min: number;
  readonly max: number;
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly groups: readonly { readonly label: string; readonly bars: readonly Bar[] }[];
}

function sizeLabel(bytes: number | null): string {
  if (bytes === null) return '';
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function panelSvg(panel: Panel, x0: number, width: number): string {
  const { top, height } = PANEL;
  const bottom = top + height;
  const out: string[] = [text(x0 + width / 2, top - 28, panel.title, 'text-anchor="middle" font-size="15" font-weight="bold"')];
  if (panel.groups.length === 0) {
    out.push(text(x0 + width / 2, top + height / 2, 'not measured in this run', 'text-anchor="middle" fill="#666"'));
    return out.join('\n');
  }
  const axis = axisScale(Math.max(...panel.groups.flatMap((g) => g.bars.map((b) => b.max))) * 1.08);
  const yMax = axis.max;
  const y = (v: number) => bottom - (v / yMax) * height;
  for (let i = 0; i * axis.step <= yMax + 1e-9; i++) {
    const v = i * axis.step;
    out.push(`<line x1="${x0}" x2="${x0 + width}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e0e0e0"/>`);
    out.push(text(x0 - 6, y(v) + 4, Number(v.toPrecision(3)).toString(), 'text-anchor="end" font-size="11" fill="#444"'));
  }
  out.push(text(x0 - 48, top + height / 2, panel.unit, `text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 48} ${top + height / 2})"`));
  const groupWidth = width / panel.groups.length;
  const barWidth = Math.min(36, (groupWidth * 0.8) / SERIES.length);
  panel.groups.forEach((group, gi) => {
    const cx = x0 + groupWidth * (gi + 0.5);
    const start = cx - (barWidth * group.bars.length) / 2;
    group.bars.forEach((bar, bi) => {
      const bx = start + bi * barWidth;
      const mid = bx + barWidth / 2;
      out.push(`<rect x="${bx.toFixed(1)}" y="${y(bar.value).toFixed(1)}" width="${(barWidth - 3).toFixed(1)}" height="${(bottom - y(bar.value)).toFixed(1)}" fill="${bar.series.color}"><title>${escapeXml(`${bar.series.label} ${group.label}: ${bar.value.toPrecision(3)} ${panel.unit} (rounds ${bar.min.toPrecision(3)}..${bar.max.toPrecision(3)})`)}</title></rect>`);
      out.push(`<line x1="${(mid - 1.5).toFixed(1)}" x2="${(mid - 1.5).toFixed(1)}" y1="${y(bar.min).toFixed(1)}" y2="${y(bar.max).toFixed(1)}" stroke="#222" stroke-width="1.2"/>`);
      out.push(text(mid - 1.5, y(bar.value) - 4, bar.value.toPrecision(3), 'text-anchor="middle" font-size="10" fill="#222"'));
    });
    out.push(text(cx, bottom + 16, group.label, 'text-anchor="middle" font-size="12"'));
  });
  out.push(`<line x1="${x0}" x2="${x0 + width}" y1="${bottom}" y2="${bottom}" stroke="#444"/>`);
  return out.join('\n');
}

/** The cases of one kind to chart: loopback on one CPU if measured, else the first path and pinning there are. */
function chartedCases(cases: readonly CaseResult[], kind: 'rr' | 'stream'): CaseResult[] {
  const ofKind = cases.filter((c) => c.kind === kind);
  const preferred = ofKind.find((c) => c.path === 'loopback' && c.pinning === 'same-cpu') ?? ofKind[0];
  if (!preferred) return [];
  return ofKind.filter((c) => c.path === preferred.path && c.pinning === preferred.pinning).sort((a, b) => (a.size ?? 0) - (b.size ?? 0));
}

function panelFor(cases: readonly CaseResult[], kind: 'rr' | 'stream', metric: string, title: string, unit: string): Panel {
  const chosen = chartedCases(cases, kind);
  const where = chosen[0] ? ` (${chosen[0].path}, ${chosen[0].pinning})` : '';
  return {
    title: `${title}${where}`,
    unit,
    groups: chosen.map((c) => ({
      label: sizeLabel(c.size),
      bars: SERIES.flatMap((series) => {
        const s = c.sides[series.side]?.[metric];
        return s ? [{ series, value: s.median, min: s.spread.min, max: s.spread.max }] : [];
      }),
    })),
  };
}

export function renderChart(r: BenchResults): string {
  const panelWidth = (WIDTH - PANEL.left * 2 - PANEL.gap - PANEL.right) / 2;
  const rtt = panelFor(r.cases, 'rr', 'p50Us', 'Round trip p50 by message size', 'µs (lower is better)');
  const tput = panelFor(r.cases, 'stream', 'gbps', 'Throughput by write size', 'Gbit/s (higher is better)');
  const legend = SERIES.map((s, i) => {
    const x = PANEL.left + i * 190;
    return `<rect x="${x}" y="${HEIGHT - 56}" width="14" height="14" fill="${s.color}"/>${text(x + 20, HEIGHT - 44, s.label, 'font-size="12"')}`;
  }).join('\n');
  const footer = `kernel ${r.environment.kernel}, ${r.environment.cpuModel}; ${r.method.rounds} rounds, median with min..max whiskers; ${r.startedAt.slice(0, 10)}`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    text(WIDTH / 2, 22, 'sockaccel bench: plain TCP vs sockaccel vs Unix domain socket', 'text-anchor="middle" font-size="17" font-weight="bold"'),
    panelSvg(rtt, PANEL.left, panelWidth),
    panelSvg(tput, PANEL.left * 2 + panelWidth + PANEL.gap, panelWidth),
    legend,
    text(WIDTH - PANEL.right, HEIGHT - 12, footer, 'text-anchor="end" font-size="10" fill="#666"'),
    `</svg>`,
    '',
  ].join('\n');
}
