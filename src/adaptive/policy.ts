/**
 * The adaptive policy, pure: from what a service's connections did (sums
 * over both directions, with the half-life already applied), the time that
 * accelerating them saved or cost, and the decision that follows.
 *
 *   saved = turns·turnSaving − conns·connectionCost − (msgs − turns)·burstMessageCost + bytes·byteSaving/1000
 *
 * in nanoseconds. A turn is a send answering the peer: there the redirect
 * skips a loopback wake-up. A send that continues its side's burst gains
 * nothing from that and pays the sk_msg cost that loopback TCP coalesces
 * away. Every accelerated connection pays the psock setup and teardown once.
 * Bytes save a little each (no segmentation, no checksums): large writes win.
 *
 * The decision is on the total, never on counting connections: a service
 * with keep-alive and one-shot connections on one port is accelerated when
 * the keep-alive turns save more than the one-shot setups cost.
 */
import type { Decision, Reason } from '../kernel/services';

/** The four measured constants (config adaptive*Ns/Ps; `sockaccel bench` derives them). */
export interface Calibration {
  readonly connectionCostNs: number;
  readonly turnSavingNs: number;
  readonly burstMessageCostNs: number;
  readonly byteSavingPs: number;
}

export interface PolicyOptions extends Calibration {
  /** Closed accelerated connections needed before deciding (adaptiveMinConnections). */
  readonly minConnections: number;
  /** Written into plain decisions: the largest share of new connections still accelerated (see exploreShare). */
  readonly explorePermille: number;
}

/**
 * Explored connections a plain service needs per half-life, in units of
 * minConnections: its decayed evidence then holds about
 * EXPLORE_EVIDENCE × minConnections / ln 2 connections, well above what a
 * decision needs, so a change in its traffic shows within a half-life or two.
 */
export const EXPLORE_EVIDENCE = 4;

/**
 * The share of a plain service's new connections still accelerated, in
 * thousandths: what keeps EXPLORE_EVIDENCE × minConnections of them coming
 * per half-life at the service's rate of plain connections, within 1 and
 * maxPermille (0 turns exploring off). Each explored connection pays the
 * setup that made the service plain, so a busy service explores a small
 * share (1‰ at thousands of connections a second) and a quiet one the
 * largest.
 */
export function exploreShare(plainConnsPerSecond: number, maxPermille: number, minConnections: number, halfLifeSeconds: number): number {
  if (maxPermille <= 0) return 0;
  const wantedPerSecond = (EXPLORE_EVIDENCE * minConnections) / halfLifeSeconds;
  const permille = plainConnsPerSecond > 0 ? Math.ceil((1000 * wantedPerSecond) / plainConnsPerSecond) : maxPermille;
  return Math.min(maxPermille, Math.max(1, permille));
}

/** What a service's accelerated connections did; both directions summed, decayed (so fractional). */
export interface ServiceShape {
  /** Connections paired (psock setup paid). */
  readonly connsAccelerated: number;
  /** Of those, closed and folded: only these have their whole shape counted. */
  readonly connsClosed: number;
  readonly msgs: number;
  readonly bytes: number;
  readonly turns: number;
  /**
   * Its connections run beyond loopback within one namespace: between two
   * namespaces (plain TCP crosses a veth) or as a mesh's hop (a sidecar
   * relays it into one). The burst cost was measured on loopback only.
   */
  readonly beyondLoopback?: boolean;
}

/**
 * Messages that are evidence on their own: a single long connection with a
 * thousand sends (a stream, a busy keep-alive) shows its shape, however few
 * connections closed.
 */
export const EVIDENCE_MESSAGES = 1000;

/** The four terms of the estimate, in ns, and their sum. */
export interface Estimate {
  readonly turnsSavedNs: number;
  readonly bytesSavedNs: number;
  readonly setupCostNs: number;
  readonly burstCostNs: number;
  /** turnsSaved + bytesSaved − setupCost − burstCost */
  readonly savedNs: number;
}

export function estimate(s: ServiceShape, c: Calibration): Estimate {
  const turnsSavedNs = s.turns * c.turnSavingNs;
  const bytesSavedNs = (s.bytes * c.byteSavingPs) / 1000;
  const setupCostNs = s.connsAccelerated * c.connectionCostNs;
  // The burst cost is loopback's: plain TCP appends a small write to the tail
  // segment and hands it over in one softirq. Across a veth plain TCP pays
  // its packets too, and the redirect gains on small writes (1 KiB: several
  // times plain pod to pod and through a sidecar chain, see docs/adaptive.md;
  // a chain whose loopback hops were left plain ran at 0.72× of plain), so a
  // burst is no cost there.
  const burstCostNs = s.beyondLoopback ? 0 : Math.max(0, s.msgs - s.turns) * c.burstMessageCostNs;
  return { turnsSavedNs, bytesSavedNs, setupCostNs, burstCostNs, savedNs: turnsSavedNs + bytesSavedNs - setupCostNs - burstCostNs };
}

/**
 * Enough to decide: `minConnections` connections closed (a connection still
 * open has paid its setup but folded few of its turns, so counting open ones
 * would make every new keep-alive pool look like short connections), or
 * EVIDENCE_MESSAGES messages.
 */
export function hasEvidence(s: ServiceShape, minConnections: number): boolean {
  return s.connsClosed >= minConnections || s.msgs >= EVIDENCE_MESSAGES;
}

export interface Judgement {
  /** null: not enough evidence yet (connections stay accelerated, a decision already made stays). */
  readonly decision: Decision | null;
  readonly estimate: Estimate;
  /** One sentence, for the log and status: the shape and the terms behind the decision (built when read). */
  readonly why: string;
}

/** `why` is formatted only when read: the learner judges thousands of services a round and logs few. */
function judgement(decision: Decision | null, e: Estimate, why: () => string): Judgement {
  return {
    decision,
    estimate: e,
    get why() {
      return why();
    },
  };
}

export function judge(s: ServiceShape, opts: PolicyOptions): Judgement {
  const e = estimate(s, opts);
  if (!hasEvidence(s, opts.minConnections)) {
    return judgement(null, e, () => `learning: ${count(s.connsClosed)} of ${opts.minConnections} connections closed, ${count(s.msgs)} of ${EVIDENCE_MESSAGES} messages`);
  }
  const reason: Reason = e.savedNs >= 0 ? 'gains' : e.setupCostNs >= e.burstCostNs ? 'short-connections' : 'small-writes';
  const plain = reason !== 'gains';
  const perConn = Math.max(s.connsAccelerated, 1);
  const decision: Decision = {
    verdict: plain ? 'plain' : 'accelerate',
    explorePermille: plain ? opts.explorePermille : 0,
    reason,
    savedNsPerConn: Math.round(e.savedNs / perConn),
    evidenceConns: Math.round(s.connsAccelerated),
  };
  const shape = { ...s };
  return judgement(decision, e, () => explain(shape, e, reason));
}

/**
 * "2.0 turns per connection save 12 µs; setup costs 30 µs", with the bytes
 * and the bursts when they weigh, and the balance.
 */
function explain(s: ServiceShape, e: Estimate, reason: Reason): string {
  const conns = Math.max(s.connsAccelerated, 1);
  const per = (ns: number) => duration(ns / conns);
  const total = Math.abs(e.turnsSavedNs) + Math.abs(e.bytesSavedNs) + e.setupCostNs + e.burstCostNs;
  // A term under 5% of the whole only clutters the sentence.
  const weighs = (ns: number) => total > 0 && ns / total >= 0.05;
  const gains = [`${fixed(s.turns / conns)} turns per connection save ${per(e.turnsSavedNs)}`];
  if (weighs(e.bytesSavedNs)) gains.push(`${size(s.msgs > 0 ? s.bytes / s.msgs : 0)} writes save ${per(e.bytesSavedNs)} in bytes`);
  const costs = [`setup costs ${per(e.setupCostNs)}`];
  if (weighs(e.burstCostNs)) {
    const perTurn = fixed(s.turns > 0 ? s.msgs / s.turns : s.msgs);
    costs.push(`${perTurn} messages per turn (${size(s.msgs > 0 ? s.bytes / s.msgs : 0)} each) cost ${per(e.burstCostNs)}`);
  }
  const balance =
    reason === 'gains'
      ? `saves ${per(e.savedNs)} per connection`
      : `loses ${per(-e.savedNs)} per connection (${reason === 'short-connections' ? 'short connections' : 'small writes'})`;
  return `${gains.join(' and ')}; ${costs.join(', ')}: ${balance}`;
}

function count(n: number): string {
  return Number.isInteger(n) ? String(n) : fixed(n);
}

/** Three significant figures at most, one decimal under 100. */
function fixed(n: number): string {
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
}

/** 850 ns, 14 µs, 2.6 ms, 1.2 s */
export function duration(ns: number): string {
  const a = Math.abs(ns);
  const unit = a >= 1e9 ? [1e9, 's'] : a >= 1e6 ? [1e6, 'ms'] : a >= 1e3 ? [1e3, 'µs'] : [1, 'ns'];
  const v = ns / (unit[0] as number);
  return `${Math.abs(v) >= 10 || unit[1] === 'ns' ? Math.round(v) : v.toFixed(1)} ${unit[1]}`;
}

/** 64 B, 1.0 KiB, 128 KiB, 1.5 MiB */
export function size(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const [v, u] = bytes < 1024 * 1024 ? [bytes / 1024, 'KiB'] : [bytes / (1024 * 1024), 'MiB'];
  return `${v >= 10 ? Math.round(v) : v.toFixed(1)} ${u}`;
}
