/** Reads the per-CPU counters and sums them over CPUs. */
import { bpfMapLookupElem, libbpfNumPossibleCpus } from './libbpf';
import { Stats, STATS_SIZE, sumPerCpuStats } from './bpf-layout';

export function readStats(statsFd: number): Stats {
  const ncpus = libbpfNumPossibleCpus();
  const value = Buffer.alloc(ncpus * Math.ceil(STATS_SIZE / 8) * 8);
  bpfMapLookupElem(statsFd, Buffer.alloc(4), value);
  return sumPerCpuStats(value, ncpus);
}

/** Sockets in the sockhash right now, by the counters (cheap at any map size). */
export function acceleratedSockets(s: Stats): bigint {
  return s.sockets_inserted - s.sockets_removed;
}

/** One line for logs and systemd STATUS=. */
export function summarize(s: Stats): string {
  return `${acceleratedSockets(s)} sockets accelerated, ${s.bytes_redirected} bytes redirected, ${s.insert_fail_full} inserts failed (map full)`;
}
