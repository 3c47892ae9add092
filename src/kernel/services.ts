/**
 * The adaptive policy's maps, as user space reads and writes them: the
 * services the programs learn (sa_services), the daemon's verdicts
 * (sa_decisions) and the run-time switch (sa_policy). Layouts in
 * bpf/sockaccel.h, mirrored in bpf-layout.ts.
 */
import { bpfMapDeleteElem, bpfMapLookupBatch, bpfMapLookupElem, bpfMapUpdateElem } from './libbpf';
import { DECISION, formatEndpoint, PATH, perDirection, POLICY, REASON, SERVICE, SERVICE_KEY, VERDICT } from './bpf-layout';

/** Where clients connect (before NAT); netns is set only for a loopback address. */
export interface ServiceKey {
  readonly ip: Buffer;
  readonly port: number;
  readonly netns: bigint;
}

/** A pair of per-direction counters: [client→server, server→client]. */
export type PerDirection = readonly [bigint, bigint];

export interface ServiceCounters {
  readonly connsAccelerated: bigint;
  readonly connsPlain: bigint;
  readonly connsClosed: bigint;
  readonly lifetimeNs: bigint;
  readonly msgs: PerDirection;
  readonly bytes: PerDirection;
  readonly turns: PerDirection;
  readonly lastSeenNs: bigint;
  /** The port the server accepted on: differs from key.port under NAT (a mesh's sidecar). */
  readonly serverPort: number;
  /** Its last paired connection joined two network namespaces (plain TCP would cross a veth), not one (loopback). */
  readonly crossNetns: boolean;
  /** A service mesh's proxy was one end of its last paired connection. */
  readonly meshHop: boolean;
}

/** A service that has seen nothing yet. */
export const NO_COUNTERS: ServiceCounters = Object.freeze<ServiceCounters>({
  connsAccelerated: 0n,
  connsPlain: 0n,
  connsClosed: 0n,
  lifetimeNs: 0n,
  msgs: [0n, 0n],
  bytes: [0n, 0n],
  turns: [0n, 0n],
  lastSeenNs: 0n,
  serverPort: 0,
  crossNetns: false,
  meshHop: false,
});

export interface ServiceEntry {
  readonly key: ServiceKey;
  /** Stable text form: "127.0.0.1:8080@netns 4097", "10.0.0.5:80", "[fd00::5]:80". */
  readonly id: string;
  readonly counters: ServiceCounters;
}

export type Verdict = keyof typeof VERDICT;
export type Reason = keyof typeof REASON;

export interface Decision {
  readonly verdict: Verdict;
  /** 0..1000: share of new connections still accelerated while the verdict is plain. */
  readonly explorePermille: number;
  readonly reason: Reason;
  readonly savedNsPerConn: number;
  readonly evidenceConns: number;
}

export function serviceId(key: ServiceKey): string {
  const endpoint = formatEndpoint(key.ip, key.port);
  return key.netns === 0n ? endpoint : `${endpoint}@netns ${key.netns}`;
}

export function encodeServiceKey(key: ServiceKey): Buffer {
  const buf = Buffer.alloc(SERVICE_KEY.size);
  key.ip.copy(buf, SERVICE_KEY.ip);
  buf.writeUInt32LE(key.port, SERVICE_KEY.port);
  buf.writeBigUInt64LE(key.netns, SERVICE_KEY.netns);
  return buf;
}

export function decodeServiceKey(buf: Buffer): ServiceKey {
  return {
    ip: Buffer.from(buf.subarray(SERVICE_KEY.ip, SERVICE_KEY.ip + 16)),
    port: buf.readUInt32LE(SERVICE_KEY.port),
    netns: buf.readBigUInt64LE(SERVICE_KEY.netns),
  };
}

export function decodeService(buf: Buffer): ServiceCounters {
  return {
    connsAccelerated: buf.readBigUInt64LE(SERVICE.connsAccelerated),
    connsPlain: buf.readBigUInt64LE(SERVICE.connsPlain),
    connsClosed: buf.readBigUInt64LE(SERVICE.connsClosed),
    lifetimeNs: buf.readBigUInt64LE(SERVICE.lifetimeNs),
    msgs: perDirection(buf, SERVICE.msgs),
    bytes: perDirection(buf, SERVICE.bytes),
    turns: perDirection(buf, SERVICE.turns),
    lastSeenNs: buf.readBigUInt64LE(SERVICE.lastSeenNs),
    serverPort: buf.readUInt32LE(SERVICE.serverPort),
    crossNetns: (buf.readUInt32LE(SERVICE.path) & PATH.crossNetns) !== 0,
    meshHop: (buf.readUInt32LE(SERVICE.path) & PATH.mesh) !== 0,
  };
}

const VERDICT_NAMES = Object.fromEntries(Object.entries(VERDICT).map(([k, v]) => [v, k])) as Record<number, Verdict>;
const REASON_NAMES = Object.fromEntries(Object.entries(REASON).map(([k, v]) => [v, k])) as Record<number, Reason>;

export function encodeDecision(d: Decision): Buffer {
  const buf = Buffer.alloc(DECISION.size);
  buf.writeUInt32LE(VERDICT[d.verdict], DECISION.verdict);
  buf.writeUInt32LE(d.explorePermille, DECISION.explorePermille);
  buf.writeUInt32LE(REASON[d.reason], DECISION.reason);
  buf.writeBigInt64LE(BigInt(Math.round(d.savedNsPerConn)), DECISION.savedNsPerConn);
  buf.writeBigUInt64LE(BigInt(Math.max(0, Math.round(d.evidenceConns))), DECISION.evidenceConns);
  return buf;
}

export function decodeDecision(buf: Buffer): Decision {
  return {
    verdict: VERDICT_NAMES[buf.readUInt32LE(DECISION.verdict)] ?? 'accelerate',
    explorePermille: buf.readUInt32LE(DECISION.explorePermille),
    reason: REASON_NAMES[buf.readUInt32LE(DECISION.reason)] ?? 'none',
    savedNsPerConn: Number(buf.readBigInt64LE(DECISION.savedNsPerConn)),
    evidenceConns: Number(buf.readBigUInt64LE(DECISION.evidenceConns)),
  };
}

/** Every service the programs have recorded (an LRU map: bounded by its size). */
export function readServices(fd: number): ServiceEntry[] {
  return bpfMapLookupBatch(fd, SERVICE_KEY.size, SERVICE.size).map((e) => {
    const key = decodeServiceKey(e.key);
    return { key, id: serviceId(key), counters: decodeService(e.value) };
  });
}

/** The daemon's verdicts, by service id. */
export function readDecisions(fd: number): Map<string, { key: ServiceKey; decision: Decision }> {
  const out = new Map<string, { key: ServiceKey; decision: Decision }>();
  for (const e of bpfMapLookupBatch(fd, SERVICE_KEY.size, DECISION.size)) {
    const key = decodeServiceKey(e.key);
    out.set(serviceId(key), { key, decision: decodeDecision(e.value) });
  }
  return out;
}

/** Throws LibbpfError; errno E2BIG when the map is full. */
export function writeDecision(fd: number, key: ServiceKey, d: Decision): void {
  bpfMapUpdateElem(fd, encodeServiceKey(key), encodeDecision(d));
}

/** False if there was none. */
export function deleteDecision(fd: number, key: ServiceKey): boolean {
  return bpfMapDeleteElem(fd, encodeServiceKey(key));
}

/** The switch as pinned; null when it was never written. */
export function readAdaptiveSwitch(policyFd: number): boolean | null {
  const value = Buffer.alloc(POLICY.size);
  return bpfMapLookupElem(policyFd, Buffer.alloc(4), value) ? value.readUInt32LE(POLICY.adaptive) !== 0 : null;
}

/** Off: the programs ignore every decision and accelerate whatever pairs. */
export function setAdaptiveSwitch(policyFd: number, on: boolean): void {
  const value = Buffer.alloc(POLICY.size);
  value.writeUInt32LE(on ? 1 : 0, POLICY.adaptive);
  bpfMapUpdateElem(policyFd, Buffer.alloc(4), value);
}
