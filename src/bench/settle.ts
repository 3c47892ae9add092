/**
 * Between runs: wait until the previous run's sockets are really freed. An
 * accelerated socket is freed late: its psock is destroyed from a kworker
 * after an RCU grace period (issue 5 measured that work at 14% of a CPU in a
 * connection-per-request run). Left alone, that work lands in the next run's
 * window, and with runs interleaved A B C / C B A it penalises whichever
 * side follows the accelerated one: the plain side in even rounds, the
 * adaptive side in odd ones. The kernel's count of allocated TCP sockets
 * (/proc/net/sockstat "alloc", machine-wide; TIME_WAIT minisocks are not in
 * it) falls back to where it was before the run once they are all gone.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Sockets others (tests, services) may open meanwhile: the wait is for ours, not for a quiet machine. */
export const SETTLE_SLACK = 16;
export const SETTLE_DEADLINE_MS = 3_000;
const POLL_MS = 10;

/** "TCP: inuse 1 orphan 0 tw 35613 alloc 1 mem 195" → 1. */
export function parseTcpAlloc(sockstat: string): number {
  const m = /^TCP:.*\balloc (\d+)/m.exec(sockstat);
  if (!m) throw new Error('no TCP alloc count in /proc/net/sockstat');
  return Number(m[1]);
}

export function tcpSocketsAllocated(): number {
  return parseTcpAlloc(fs.readFileSync('/proc/net/sockstat', 'utf8'));
}

/**
 * Waits (up to SETTLE_DEADLINE_MS) until no more than SETTLE_SLACK sockets
 * beyond `baseline` remain allocated; returns how long it waited and whether
 * it got there.
 */
export async function settle(baseline: number, read: () => number = tcpSocketsAllocated): Promise<{ waitedMs: number; settled: boolean }> {
  const start = Date.now();
  for (;;) {
    if (read() <= baseline + SETTLE_SLACK) return { waitedMs: Date.now() - start, settled: true };
    if (Date.now() - start >= SETTLE_DEADLINE_MS) return { waitedMs: Date.now() - start, settled: false };
    await sleep(POLL_MS);
  }
}
