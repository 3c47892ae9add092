/**
 * The TypeScript mirror of bpf/sockaccel.h: sizes, field order and codecs
 * for the structs user space reads and writes. test/unit/bpf-layout.test.ts
 * compiles the header and checks every size and offset here against it.
 */
import { formatIp, IpPrefix } from './ip-prefix';

export const LAYOUT_VERSION = 1;
export const META_MAGIC = 0x53414343;

/** struct sa_sock_key */
export const SOCK_KEY = { size: 48, localIp: 0, remoteIp: 16, localPort: 32, remotePort: 36, netns: 40 } as const;
/** struct sa_listener_key */
export const LISTENER_KEY = { size: 32, ip: 0, port: 16, netns: 24 } as const;
/** struct sa_lpm_key */
export const LPM_KEY = { size: 20, prefixlen: 0, ip: 4 } as const;
/** struct sa_pair */
export const PAIR = { size: 16, state: 0, createdNs: 8 } as const;
/** struct sa_meta */
export const META = { size: 8, magic: 0, layoutVersion: 4 } as const;

export const PAIR_STATES: Record<number, string> = { 1: 'pending', 2: 'paired', 3: 'fallback' };

/** struct sa_stats, in declaration order; every field is a __u64. */
export const STAT_FIELDS = [
  'sockets_inserted',
  'sockets_removed',
  'insert_fail_full',
  'insert_fail_other',
  'msgs_redirected',
  'bytes_redirected',
  'msgs_passed',
  'bytes_passed',
  'pair_fallback',
  'skipped_not_local',
  'skipped_no_listener',
  'skipped_port',
  'listeners_seen',
] as const;
export type StatName = (typeof STAT_FIELDS)[number];
export type Stats = Record<StatName, bigint>;
export const STATS_SIZE = STAT_FIELDS.length * 8;

/** Sums a per-CPU value buffer (ncpus slots of round_up(size, 8) bytes). */
export function sumPerCpuStats(buf: Buffer, ncpus: number): Stats {
  const stride = Math.ceil(STATS_SIZE / 8) * 8;
  const out = Object.fromEntries(STAT_FIELDS.map((f) => [f, 0n])) as Stats;
  for (let cpu = 0; cpu < ncpus; cpu++) {
    STAT_FIELDS.forEach((f, i) => {
      out[f] += buf.readBigUInt64LE(cpu * stride + i * 8);
    });
  }
  return out;
}

export interface SockKey {
  localIp: Buffer;
  remoteIp: Buffer;
  localPort: number;
  remotePort: number;
  netns: bigint;
}

export function decodeSockKey(buf: Buffer): SockKey {
  return {
    localIp: Buffer.from(buf.subarray(SOCK_KEY.localIp, SOCK_KEY.localIp + 16)),
    remoteIp: Buffer.from(buf.subarray(SOCK_KEY.remoteIp, SOCK_KEY.remoteIp + 16)),
    localPort: buf.readUInt32LE(SOCK_KEY.localPort),
    remotePort: buf.readUInt32LE(SOCK_KEY.remotePort),
    netns: buf.readBigUInt64LE(SOCK_KEY.netns),
  };
}

export function formatSockKey(k: SockKey): string {
  const ep = (ip: Buffer, port: number) => (ip[10] === 0xff && ip[11] === 0xff && ip.readUInt32BE(0) === 0 ? `${formatIp(ip)}:${port}` : `[${formatIp(ip)}]:${port}`);
  return `${ep(k.localIp, k.localPort)} -> ${ep(k.remoteIp, k.remotePort)}${k.netns ? ` netns=${k.netns}` : ''}`;
}

export function encodeLpmKey(p: IpPrefix): Buffer {
  const buf = Buffer.alloc(LPM_KEY.size);
  buf.writeUInt32LE(p.prefixlen, LPM_KEY.prefixlen);
  p.addr.copy(buf, LPM_KEY.ip);
  return buf;
}

export function decodeLpmKey(buf: Buffer): IpPrefix {
  return { prefixlen: buf.readUInt32LE(LPM_KEY.prefixlen), addr: Buffer.from(buf.subarray(LPM_KEY.ip, LPM_KEY.ip + 16)) };
}

export function encodeMeta(): Buffer {
  const buf = Buffer.alloc(META.size);
  buf.writeUInt32LE(META_MAGIC, META.magic);
  buf.writeUInt32LE(LAYOUT_VERSION, META.layoutVersion);
  return buf;
}

export function decodeMeta(buf: Buffer): { magic: number; layoutVersion: number } {
  return { magic: buf.readUInt32LE(META.magic), layoutVersion: buf.readUInt32LE(META.layoutVersion) };
}

/** Port bitmap for the sockops program's include_ports / exclude_ports rodata. */
export function portBitmap(ports: readonly number[]): Buffer {
  const buf = Buffer.alloc(1024 * 8);
  for (const p of ports) buf[p >> 3] |= 1 << (p & 7);
  return buf;
}
