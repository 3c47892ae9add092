/**
 * The TypeScript mirror of bpf/sockaccel.h: sizes, field order and codecs
 * for the structs user space reads and writes. test/unit/bpf-layout.test.ts
 * compiles the header and checks every size and offset here against it.
 */
import { formatIp, IpPrefix, isV4Mapped } from '../config/ip-prefix';

export const LAYOUT_VERSION = 6;
export const META_MAGIC = 0x53414343;

/** struct sa_conn_key */
export const CONN_KEY = { size: 32, clientIp: 0, clientPort: 16, clientSeq: 20, serverSeq: 24 } as const;
/** struct sa_listener_key */
export const LISTENER_KEY = { size: 32, ip: 0, port: 16, netns: 24 } as const;
/** struct sa_lpm_key */
export const LPM_KEY = { size: 20, prefixlen: 0, ip: 4 } as const;
/** struct sa_shape: __u64[2] each, by direction: [0] client→server, [1] server→client */
export const SHAPE = { size: 104, lastSender: 0, msgs: 8, bytes: 24, turns: 40 } as const;
/** struct sa_shape_slot: one element of sa_shapes; owner 0 = free */
export const SHAPE_SLOT = { size: 112, owner: 0, shape: 8 } as const;
/** struct sa_pair */
export const PAIR = {
  size: 192,
  state: 0,
  clientUid: 4,
  createdNs: 8,
  clientNetns: 16,
  serverNetns: 24,
  dstIp: 32,
  serverIp: 48,
  dstPort: 64,
  serverPort: 68,
  serverUid: 72,
  shapeSlot: 76,
  shapeToken: 80,
  /** struct sa_shape, counted here by a connection without a slot */
  shape: 88,
} as const;
/** struct sa_sk_state (socket-local storage value) */
export const SK_STATE = { size: 72, flags: 0, insertedNs: 8, key: 16, bytesRedirected: 48, shapeToken: 56, shapeSlot: 64 } as const;
/** enum sa_sk_flags */
export const SK_FLAGS = { inserted: 1, client: 2, removed: 4, plain: 8 } as const;
/** struct sa_bytes_record: one per socket in the conns iterator's output */
export const BYTES_RECORD = { size: 48, key: 0, flags: 32, bytesRedirected: 40 } as const;
/** struct sa_meta */
export const META = { size: 8, magic: 0, layoutVersion: 4 } as const;

/** struct sa_mesh_preset: one slot of the mesh presets map (SA_MESH_PRESETS slots). */
export const MESH_PRESET = { size: 24, scope: 0, proxyUid: 4, outboundPort: 8, inboundPort: 12, acceleratePlain: 16 } as const;
export const MESH_PRESET_SLOTS = 4;
/** enum sa_mesh_scope. */
export const MESH_SCOPE = { off: 0, detect: 1, everywhere: 2 } as const;
/** struct sa_mesh_netns: the value of the detected-namespaces map (key: the netns cookie, a __u64). */
export const MESH_NETNS = { size: 8, preset: 0, listeners: 4 } as const;

/** struct sa_service_key */
export const SERVICE_KEY = { size: 32, ip: 0, port: 16, netns: 24 } as const;
/** struct sa_service; msgs, bytes and turns are __u64[2] by direction. */
export const SERVICE = {
  size: 96,
  connsAccelerated: 0,
  connsPlain: 8,
  connsClosed: 16,
  lifetimeNs: 24,
  msgs: 32,
  bytes: 48,
  turns: 64,
  lastSeenNs: 80,
  serverPort: 88,
  path: 92,
} as const;
/** enum sa_path bits */
export const PATH = { crossNetns: 1, mesh: 2 } as const;
/** struct sa_decision */
export const DECISION = { size: 32, verdict: 0, explorePermille: 4, reason: 8, savedNsPerConn: 16, evidenceConns: 24 } as const;
/** enum sa_verdict */
export const VERDICT = { accelerate: 1, plain: 2 } as const;
/** enum sa_reason */
export const REASON = { none: 0, gains: 1, 'short-connections': 2, 'small-writes': 3 } as const;
/** struct sa_policy */
export const POLICY = { size: 8, adaptive: 0 } as const;

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
  'mesh_candidates',
  'skipped_policy',
  'skipped_adaptive',
  'adaptive_explored',
  'services_full',
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

/** One accelerated connection as the pairs map describes it. */
export interface Connection {
  /** The pairs map key (struct sa_conn_key) in hex: what joins a connection with its sockets. */
  keyHex: string;
  client: { ip: Buffer; port: number; uid: number; netns: bigint };
  /** Where the client connected, before any NAT. */
  dst: { ip: Buffer; port: number };
  /** Where the server accepted it (a sidecar's port under a mesh); port 0 while pending. */
  server: { ip: Buffer; port: number; uid: number; netns: bigint };
  state: string;
  createdNs: bigint;
  /** What sk_msg counted, per direction [client→server, server→client]: in the entry, plus the slot's (addShapes). */
  shape: Shape;
  /** The connection's sa_shapes slot, if it got one. */
  shapeSlot: { index: number; token: bigint } | null;
}

/** Messages, bytes and turns, per direction [client→server, server→client]. */
export interface Shape {
  msgs: [bigint, bigint];
  bytes: [bigint, bigint];
  turns: [bigint, bigint];
}

/** The struct sa_shape at `at`. */
export function decodeShape(buf: Buffer, at: number): Shape {
  return { msgs: perDirection(buf, at + SHAPE.msgs), bytes: perDirection(buf, at + SHAPE.bytes), turns: perDirection(buf, at + SHAPE.turns) };
}

export function addShapes(a: Shape, b: Shape): Shape {
  const sum = (x: [bigint, bigint], y: [bigint, bigint]): [bigint, bigint] => [x[0] + y[0], x[1] + y[1]];
  return { msgs: sum(a.msgs, b.msgs), bytes: sum(a.bytes, b.bytes), turns: sum(a.turns, b.turns) };
}

export function decodeConnection(key: Buffer, value: Buffer): Connection {
  const ip = (b: Buffer, at: number) => Buffer.from(b.subarray(at, at + 16));
  const token = value.readBigUInt64LE(PAIR.shapeToken);
  return {
    keyHex: key.toString('hex'),
    client: {
      ip: ip(key, CONN_KEY.clientIp),
      port: key.readUInt32LE(CONN_KEY.clientPort),
      uid: value.readUInt32LE(PAIR.clientUid),
      netns: value.readBigUInt64LE(PAIR.clientNetns),
    },
    dst: { ip: ip(value, PAIR.dstIp), port: value.readUInt32LE(PAIR.dstPort) },
    server: {
      ip: ip(value, PAIR.serverIp),
      port: value.readUInt32LE(PAIR.serverPort),
      uid: value.readUInt32LE(PAIR.serverUid),
      netns: value.readBigUInt64LE(PAIR.serverNetns),
    },
    state: PAIR_STATES[value.readUInt32LE(PAIR.state)] ?? 'unknown',
    createdNs: value.readBigUInt64LE(PAIR.createdNs),
    shape: decodeShape(value, PAIR.shape),
    shapeSlot: token === 0n ? null : { index: value.readUInt32LE(PAIR.shapeSlot), token },
  };
}

export function perDirection(buf: Buffer, at: number): [bigint, bigint] {
  return [buf.readBigUInt64LE(at), buf.readBigUInt64LE(at + 8)];
}

/** "ip:port", or "[ipv6]:port"; IPv4-mapped addresses print as IPv4. */
export function formatEndpoint(ip: Buffer, port: number): string {
  return isV4Mapped(ip) ? `${formatIp(ip)}:${port}` : `[${formatIp(ip)}]:${port}`;
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
