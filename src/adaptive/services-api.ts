// TEMPORARY: the spec's interface of src/kernel/services.ts (lead), so this
// module builds before the kernel side lands. Deleted at the merge.
export interface ServiceKey {
  ip: Buffer;
  port: number;
  netns: bigint;
}
export interface ServiceCounters {
  connsAccelerated: bigint;
  connsPlain: bigint;
  connsClosed: bigint;
  lifetimeNs: bigint;
  msgs: [bigint, bigint];
  bytes: [bigint, bigint];
  turns: [bigint, bigint];
  lastSeenNs: bigint;
  serverPort: number;
}
export type Verdict = 'accelerate' | 'plain';
export type Reason = 'none' | 'gains' | 'short-connections' | 'small-writes';
export interface Decision {
  verdict: Verdict;
  explorePermille: number;
  reason: Reason;
  savedNsPerConn: number;
  evidenceConns: number;
}
export declare function readServices(fd: number): { key: ServiceKey; id: string; counters: ServiceCounters }[];
export declare function readDecisions(fd: number): Map<string, { key: ServiceKey; decision: Decision }>;
export declare function writeDecision(fd: number, key: ServiceKey, d: Decision): void;
export declare function deleteDecision(fd: number, key: ServiceKey): void;
export declare function setAdaptiveSwitch(policyFd: number, on: boolean): void;
