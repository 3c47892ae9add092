/**
 * The learning loop: every adaptiveIntervalMs, read every service's counters
 * (monotonic sums the BPF programs keep in sa_services), take the deltas
 * since the last read, add them to sums that halve every half-life, judge
 * (policy.ts) and write the decisions that changed into sa_decisions, which
 * the sock_ops program reads for each new connection.
 *
 * Bounded: a service is tracked only while its key is in sa_services (an
 * LRU map) or has a decision in sa_decisions (a hash of the same capacity),
 * so memory follows what the maps hold, however many services come and go.
 * A service with no new traffic for FORGET_HALF_LIVES half-lives is
 * forgotten, its decision deleted: when it comes back it is learned again.
 *
 * The maps and the clock are injected (ServiceAccess, now()), so tests can
 * drive the loop without a kernel.
 */
import type { Logger } from 'pino';
import { encodeServiceKey, NO_COUNTERS, serviceId, type Decision, type ServiceCounters, type ServiceKey } from '../kernel/services';
import { exploreShare, judge, type Judgement, type PolicyOptions, type ServiceShape } from './policy';

/**
 * One entry of sa_services as the learner reads it: `ref` and `lastSeenNs`
 * are cheap; `key` and `counters` may be decoded on first use (most entries
 * are unchanged in a round and never need them).
 */
export interface ServiceSample {
  /** Identifies the entry across reads: refOf(key). */
  readonly ref: string;
  readonly lastSeenNs: bigint;
  readonly key: ServiceKey;
  readonly counters: ServiceCounters;
}

/** The learner's handle on a service: its map key's bytes in hex. */
export function refOf(key: ServiceKey): string {
  return encodeServiceKey(key).toString('hex');
}

/** The two maps, as src/kernel/services.ts reads and writes them. */
export interface ServiceAccess {
  readServices(): Iterable<ServiceSample>;
  /** Keyed by anything: the learner keys them by refOf(key). */
  readDecisions(): Map<string, { key: ServiceKey; decision: Decision }>;
  /** Throws a LibbpfError with errno E2BIG when sa_decisions is full. */
  writeDecision(key: ServiceKey, d: Decision): void;
  deleteDecision(key: ServiceKey): void;
}

export interface LearnerOptions extends PolicyOptions {
  readonly halfLifeMs: number;
  /** Ports whose adaptiveOverrides entry decides (the kernel does not read decisions there): never written. */
  readonly overriddenPorts?: ReadonlySet<number>;
}

export const FORGET_HALF_LIVES = 10;
const ENOENT = 2;
const E2BIG = 7;

/** Decayed sums of one service: ServiceShape plus what status shows. */
interface Sums extends ServiceShape {
  connsAccelerated: number;
  connsClosed: number;
  connsPlain: number;
  msgs: number;
  bytes: number;
  turns: number;
  /** As the programs last saw it (a flag, not a sum: not decayed). */
  beyondLoopback?: boolean;
}

interface Tracked {
  key: ServiceKey;
  /** The counters last read; null while the key is absent from sa_services. */
  baseline: ServiceCounters | null;
  /** Decayed to sumsAtMs: decay is applied when a service is touched, so idle ones cost nothing. */
  sums: Sums;
  sumsAtMs: number;
  /** What sa_decisions holds for it (as we wrote or found it), or null. */
  decision: Decision | null;
  /** The last time new traffic was counted (or the service first seen). */
  activeMs: number;
  /** The last judgement (its why is formatted when read), or a note that replaces it. */
  judged: Judgement | null;
  note: string | null;
}

/** One service as the learner sees it now (for tests, logs and the metrics). */
export interface LearnedService {
  readonly id: string;
  readonly key: ServiceKey;
  readonly shape: Readonly<Sums>;
  readonly decision: Decision | null;
  readonly why: string;
}

const zeroSums = (): Sums => ({ connsAccelerated: 0, connsClosed: 0, connsPlain: 0, msgs: 0, bytes: 0, turns: 0 });

/** cur − prev, or null if any counter went down (the entry was evicted and recreated between two reads). */
function delta(cur: ServiceCounters, prev: ServiceCounters): Sums | null {
  // Each difference fits a double long before it loses precision (2^53 events in one round).
  const a = Number(cur.connsAccelerated - prev.connsAccelerated);
  const c = Number(cur.connsClosed - prev.connsClosed);
  const p = Number(cur.connsPlain - prev.connsPlain);
  const m0 = Number(cur.msgs[0] - prev.msgs[0]);
  const m1 = Number(cur.msgs[1] - prev.msgs[1]);
  const b0 = Number(cur.bytes[0] - prev.bytes[0]);
  const b1 = Number(cur.bytes[1] - prev.bytes[1]);
  const t0 = Number(cur.turns[0] - prev.turns[0]);
  const t1 = Number(cur.turns[1] - prev.turns[1]);
  if (a < 0 || c < 0 || p < 0 || m0 < 0 || m1 < 0 || b0 < 0 || b1 < 0 || t0 < 0 || t1 < 0) return null;
  return { connsAccelerated: a, connsClosed: c, connsPlain: p, msgs: m0 + m1, bytes: b0 + b1, turns: t0 + t1 };
}

function totals(c: ServiceCounters): Sums {
  return delta(c, NO_COUNTERS)!;
}

const isZero = (s: Sums) => s.connsAccelerated === 0 && s.connsClosed === 0 && s.connsPlain === 0 && s.msgs === 0 && s.bytes === 0 && s.turns === 0;

/** s += d·k, field by field. */
function addInto(s: Sums, d: Sums, k: number): void {
  s.connsAccelerated += d.connsAccelerated * k;
  s.connsClosed += d.connsClosed * k;
  s.connsPlain += d.connsPlain * k;
  s.msgs += d.msgs * k;
  s.bytes += d.bytes * k;
  s.turns += d.turns * k;
}

function track(key: ServiceKey, baseline: ServiceCounters | null, decision: Decision | null, now: number, note: string | null): Tracked {
  return { key, baseline, sums: zeroSums(), sumsAtMs: now, decision, activeMs: now, judged: null, note };
}

function sameDecision(a: Decision | null, b: Decision | null): boolean {
  if (a === null || b === null) return a === b;
  return a.verdict === b.verdict && a.reason === b.reason && a.explorePermille === b.explorePermille;
}

const describe = (d: Decision | null) => (d === null ? 'learning' : `${d.verdict} (${d.reason})`);

export class Learner {
  private readonly services = new Map<string, Tracked>();
  /** Services whose decision the full map refused: tried again every round, not only on new traffic. */
  private readonly refused = new Set<string>();
  private full = false;
  /** Decision changes (verdict or reason, or a decision written or deleted) since the start; the explored share moving is not one. */
  changes = 0;

  constructor(
    private readonly access: ServiceAccess,
    private readonly opts: LearnerOptions,
    private readonly log: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * The baseline: counters now (what came before is old and was judged, if
   * at all, by an earlier daemon), and the decisions already pinned, kept.
   */
  start(): void {
    const now = this.now();
    for (const { key, decision } of this.access.readDecisions().values()) {
      const ref = refOf(key);
      const t = track(key, null, decision, now, 'decided before this start');
      this.services.set(ref, t);
      if (this.opts.overriddenPorts?.has(key.port)) this.decide(ref, t);
    }
    for (const sample of this.access.readServices()) {
      const known = this.services.get(sample.ref);
      if (known) known.baseline = sample.counters;
      else this.services.set(sample.ref, track(sample.key, sample.counters, null, now, null));
    }
  }

  /** One read-decay-judge-write round; the cost follows the services with new traffic. */
  tick(): void {
    const now = this.now();
    const seen = new Set<string>();
    const changed = new Map<string, Tracked>();
    for (const sample of this.access.readServices()) {
      const id = sample.ref;
      seen.add(id);
      let t = this.services.get(id);
      // The programs stamp last_seen_ns after each update: the same stamp, nothing new
      // (and the baseline stays, so an update caught halfway is counted next round).
      if (t?.baseline && t.baseline.lastSeenNs === sample.lastSeenNs) continue;
      const counters = sample.counters;
      // A key first seen after the start: everything it counted is new.
      // null: a counter went down, the entry was recreated; it counted from zero again.
      const d = (t?.baseline ? delta(counters, t.baseline) : null) ?? totals(counters);
      if (!t) {
        t = track(sample.key, counters, null, now, null);
        this.services.set(id, t);
      }
      t.baseline = counters;
      if (isZero(d)) continue;
      this.decayTo(t, now);
      addInto(t.sums, d, 1);
      t.sums.beyondLoopback = counters.crossNetns || counters.meshHop;
      t.activeMs = now;
      changed.set(id, t);
    }

    for (const [id, t] of this.services) {
      if (!seen.has(id)) {
        t.baseline = null;
        // Evicted from sa_services and no decision to keep: nothing to hold it by.
        if (t.decision === null) {
          this.services.delete(id);
          this.refused.delete(id);
          continue;
        }
      }
      if (now - t.activeMs >= FORGET_HALF_LIVES * this.opts.halfLifeMs) this.forget(id, t);
    }
    // Only new traffic can change a decision: decay scales every term of the
    // estimate alike, and evidence running thin changes nothing (decide()).
    for (const id of this.refused) {
      const t = this.services.get(id);
      if (t) changed.set(id, t);
    }
    this.refused.clear();
    for (const [id, t] of changed) if (this.services.has(id)) this.decide(id, t);
  }

  private decayTo(t: Tracked, now: number): void {
    if (now === t.sumsAtMs) return;
    const factor = 2 ** (-(now - t.sumsAtMs) / this.opts.halfLifeMs);
    addInto(t.sums, t.sums, factor - 1);
    t.sumsAtMs = now;
  }

  /** Unheard of for 10 half-lives: drop the decision; keep only a baseline while the key is still in sa_services. */
  private forget(id: string, t: Tracked): void {
    if (t.decision !== null && !this.apply(t, null, 'forgotten: no traffic for 10 half-lives')) return;
    if (t.baseline === null) {
      this.services.delete(id);
      return;
    }
    const now = this.now();
    Object.assign(t, { sums: zeroSums(), sumsAtMs: now, activeMs: now, judged: null, note: null });
  }

  private decide(id: string, t: Tracked): void {
    if (this.opts.overriddenPorts?.has(t.key.port)) {
      t.note = 'port overridden (adaptiveOverrides)';
      if (t.decision !== null) this.apply(t, null, t.note);
      return;
    }
    const j = judge(t.sums, this.opts);
    // Too little evidence changes nothing: a plain service sees only its
    // explored share of connections, and must not flap back to accelerated
    // each time that evidence runs thin. Its share still follows its rate:
    // a busy service that quietens explores more again.
    if (j.decision === null) {
      if (t.decision === null) {
        t.judged = j;
        t.note = null;
        return;
      }
      this.write(id, t, this.withExploreShare(t, t.decision), j.why);
      return;
    }
    t.judged = j;
    t.note = null;
    this.write(id, t, this.withExploreShare(t, j.decision), j.why);
  }

  private write(id: string, t: Tracked, next: Decision, why: string): void {
    if (!sameDecision(t.decision, next) && !this.apply(t, next, why)) this.refused.add(id);
  }

  /**
   * A plain decision explores the share its rate of plain connections calls
   * for (exploreShare). The rate comes from the decayed sum, which settles at
   * rate × half-life / ln 2. The share kept changes only when the one called
   * for is off by a factor of two or at a bound, so a service's rate
   * wobbling does not rewrite its decision every round.
   */
  private withExploreShare(t: Tracked, d: Decision): Decision {
    if (d.verdict !== 'plain') return d;
    const halfLifeSeconds = this.opts.halfLifeMs / 1000;
    const wanted = exploreShare((t.sums.connsPlain * Math.LN2) / halfLifeSeconds, this.opts.explorePermille, this.opts.minConnections, halfLifeSeconds);
    const kept = t.decision?.verdict === 'plain' ? t.decision.explorePermille : null;
    const bound = wanted === 1 || wanted === this.opts.explorePermille;
    const keep = !bound && kept !== null && kept <= this.opts.explorePermille && wanted > kept / 2 && wanted < kept * 2;
    return { ...d, explorePermille: keep ? kept : wanted };
  }

  /** Writes (or, for null, deletes) the decision and logs the change; false if the map refused. */
  private apply(t: Tracked, next: Decision | null, why: string): boolean {
    try {
      if (next === null) this.access.deleteDecision(t.key);
      else this.writeMakingRoom(t.key, next);
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      // Already gone (a purge, or another daemon's cleanup): what we wanted.
      if (next === null && errno === ENOENT) {
        t.decision = null;
        return true;
      }
      if (errno !== E2BIG) throw err;
      if (!this.full) {
        this.full = true;
        this.log.warn(
          { service: serviceId(t.key), wanted: describe(next) },
          'the decisions map is full (adaptiveMaxServices): services beyond it stay accelerated until others are forgotten',
        );
      }
      return false;
    }
    if (next !== null) this.full = false;
    if (describe(t.decision) === describe(next)) {
      // Only the explored share moved with the service's rate: not a decision change.
      this.log.debug({ service: serviceId(t.key), explorePermille: next?.explorePermille }, 'explored share changed');
    } else {
      this.log.info({ service: serviceId(t.key), from: describe(t.decision), to: describe(next), reason: next?.reason ?? 'none', why }, 'service decision changed');
      this.changes++;
    }
    t.decision = next;
    return true;
  }

  /**
   * A full sa_decisions map gives way to services that are still seen: the
   * decision of the service evicted longest ago from sa_services (the LRU
   * dropped it for lack of traffic) goes first. Throws E2BIG when every
   * decision belongs to a service still in sa_services.
   */
  private writeMakingRoom(key: ServiceKey, d: Decision): void {
    try {
      this.access.writeDecision(key, d);
      return;
    } catch (err) {
      if ((err as { errno?: number }).errno !== E2BIG) throw err;
    }
    let oldest: [string, Tracked] | undefined;
    for (const entry of this.services) {
      const [, o] = entry;
      if (o.decision !== null && o.baseline === null && (!oldest || o.activeMs < oldest[1].activeMs)) oldest = entry;
    }
    if (!oldest) throw Object.assign(new Error('sa_decisions is full'), { errno: E2BIG });
    const [oldRef, o] = oldest;
    this.apply(o, null, `evicted from the services map, its decision makes room for ${serviceId(key)}`);
    this.services.delete(oldRef);
    this.access.writeDecision(key, d);
  }

  /** What is tracked now, one entry per service (the why formatted here). */
  learned(): LearnedService[] {
    const now = this.now();
    return [...this.services.values()].map((t) => {
      this.decayTo(t, now);
      return { id: serviceId(t.key), key: t.key, shape: { ...t.sums }, decision: t.decision, why: t.note ?? t.judged?.why ?? 'learning' };
    });
  }

  /** Each tracked service's decision, for the metrics (no sums, no text). */
  decisions(): { readonly port: number; readonly decision: Decision | null }[] {
    return [...this.services.values()].map((t) => ({ port: t.key.port, decision: t.decision }));
  }

  get size(): number {
    return this.services.size;
  }
}
