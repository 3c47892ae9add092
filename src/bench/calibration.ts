/**
 * The adaptive policy's four cost constants, derived from one bench run on
 * this machine (issue 10: "the thresholds are not guesses"). The daemon's
 * policy estimates the time a service saves when accelerated as
 *   turns·turnSaving − conns·connectionCost − (msgs − turns)·burstMessageCost + bytes·byteSaving
 * and each term is read off a pair of same-CPU loopback cases:
 *   turnSavingNs       = (rtt_plain − rtt_accelerated) / 2, from rr 64 B p50 (a round trip is 2 turns);
 *   connectionCostNs   = t_accelerated − t_plain, t = seconds per connection of connrate (connect,
 *                        accept, close: no data, so nothing saved, only the psock setup and teardown
 *                        paid; the crr case, which also saves 2 turns, is noisier and, with the turn
 *                        saving added back, came out at half of this, which mis-decided the mixed case);
 *   per write, Δ(s)    = t_accelerated(s) − t_plain(s), t = s / throughput, from stream 1 KiB and 128 KiB;
 *     the model says Δ(s) = burstMessageCost − s·byteSaving, so
 *   byteSavingPs       = (Δ(1 KiB) − Δ(128 KiB)) / (128 KiB − 1 KiB), in ps per byte;
 *   burstMessageCostNs = Δ(1 KiB) + 1024·byteSaving.
 * Medians over rounds throughout. A constant whose cases were not run is null.
 */
import type { CaseResult } from './results';

const KiB = 1024;
const SMALL_WRITE = KiB;
const LARGE_WRITE = 128 * KiB;

/** Names as the daemon's configuration spells them. */
export interface CalibrationConstants {
  readonly adaptiveConnectionCostNs: number | null;
  readonly adaptiveTurnSavingNs: number | null;
  readonly adaptiveBurstMessageCostNs: number | null;
  readonly adaptiveByteSavingPs: number | null;
}

export interface Calibration {
  /** Rounded to integers, as the configuration takes them. */
  readonly constants: CalibrationConstants;
  /** The medians they come from (null: not measured in this run). */
  readonly inputs: {
    readonly rr64P50Us: { readonly plain: number; readonly accelerated: number } | null;
    readonly connrateConnPerSec: { readonly plain: number; readonly accelerated: number } | null;
    readonly stream1kGbps: { readonly plain: number; readonly accelerated: number } | null;
    readonly stream128kGbps: { readonly plain: number; readonly accelerated: number } | null;
  };
  readonly method: string;
}

type Pick2 = { plain: number; accelerated: number } | null;

function medians(cases: readonly CaseResult[], kind: CaseResult['kind'], size: number | null, metric: string): Pick2 {
  const c = cases.find((x) => x.kind === kind && x.path === 'loopback' && x.size === size && x.pinning === 'same-cpu');
  const plain = c?.sides.plain?.[metric]?.median;
  const accelerated = c?.sides.accelerated?.[metric]?.median;
  return plain === undefined || accelerated === undefined ? null : { plain, accelerated };
}

/** Nanoseconds per write of `size` bytes at `gbps` (Gbit/s = bits per ns). */
function nsPerWrite(size: number, gbps: number): number {
  return (size * 8) / gbps;
}

const round = (v: number | null): number | null => (v === null || !Number.isFinite(v) ? null : Math.round(v));

export function deriveCalibration(cases: readonly CaseResult[]): Calibration {
  const rr = medians(cases, 'rr', 64, 'p50Us');
  const connrate = medians(cases, 'connrate', null, 'connPerSec');
  const small = medians(cases, 'stream', SMALL_WRITE, 'gbps');
  const large = medians(cases, 'stream', LARGE_WRITE, 'gbps');

  const turnSavingNs = rr ? ((rr.plain - rr.accelerated) * 1e3) / 2 : null;
  const connectionCostNs = connrate ? 1e9 / connrate.accelerated - 1e9 / connrate.plain : null;
  const delta = (p: Pick2, size: number) => (p ? nsPerWrite(size, p.accelerated) - nsPerWrite(size, p.plain) : null);
  const deltaSmall = delta(small, SMALL_WRITE);
  const deltaLarge = delta(large, LARGE_WRITE);
  const byteSavingNsPerByte = deltaSmall !== null && deltaLarge !== null ? (deltaSmall - deltaLarge) / (LARGE_WRITE - SMALL_WRITE) : null;
  const burstMessageCostNs = deltaSmall !== null && byteSavingNsPerByte !== null ? deltaSmall + SMALL_WRITE * byteSavingNsPerByte : null;

  return {
    constants: {
      adaptiveConnectionCostNs: round(connectionCostNs),
      adaptiveTurnSavingNs: round(turnSavingNs),
      adaptiveBurstMessageCostNs: round(burstMessageCostNs),
      adaptiveByteSavingPs: round(byteSavingNsPerByte === null ? null : byteSavingNsPerByte * 1e3),
    },
    inputs: { rr64P50Us: rr, connrateConnPerSec: connrate, stream1kGbps: small, stream128kGbps: large },
    method:
      'same CPU, loopback, medians over rounds of plain and adaptive off: turnSavingNs = (rr 64 B p50 plain − accelerated) / 2; ' +
      'connectionCostNs = connrate seconds per connection accelerated − plain; per write Δ(s) = s/throughput accelerated − plain, ' +
      'byteSavingPs = (Δ(1 KiB) − Δ(128 KiB)) / (128 KiB − 1 KiB), burstMessageCostNs = Δ(1 KiB) + 1024·byteSaving',
  };
}

/** The constants as a configuration file fragment (JSON, like /etc/sockaccel/config.json); null when none was measured. */
export function calibrationSnippet(c: Calibration): string | null {
  const known = Object.entries(c.constants).filter(([, v]) => v !== null);
  if (known.length === 0) return null;
  return `{\n${known.map(([k, v]) => `  "${k}": ${v}`).join(',\n')}\n}`;
}
