// The TypeScript mirror of bpf/sockaccel.h must match what the C compiler
// makes of the header: compile a probe that prints sizeof/offsetof and compare.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BYTES_RECORD, CONN_KEY, DECISION, SHAPE, SHAPE_SLOT, PATH, LISTENER_KEY, POLICY, REASON, SERVICE, SERVICE_KEY, VERDICT, LPM_KEY, META, PAIR, MESH_NETNS, MESH_PRESET, MESH_PRESET_SLOTS, MESH_SCOPE, SK_FLAGS, SK_STATE, STAT_FIELDS, STATS_SIZE, LAYOUT_VERSION, META_MAGIC,
  sumPerCpuStats, portBitmap, encodeLpmKey, decodeLpmKey, decodeConnection, decodeShape, addShapes, formatEndpoint,
} from '../../src/kernel/bpf-layout';
import { parsePrefix } from '../../src/config/ip-prefix';

const HEADER_DIR = path.resolve(__dirname, '..', '..', '..', 'bpf');

function compileLayoutProbe(): Record<string, number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-layout-'));
  try {
    const fields: [string, string][] = [
      ['conn_key.size', 'sizeof(struct sa_conn_key)'],
      ['conn_key.clientIp', 'offsetof(struct sa_conn_key, client_ip)'],
      ['conn_key.clientPort', 'offsetof(struct sa_conn_key, client_port)'],
      ['conn_key.clientSeq', 'offsetof(struct sa_conn_key, client_seq)'],
      ['conn_key.serverSeq', 'offsetof(struct sa_conn_key, server_seq)'],
      ['listener_key.size', 'sizeof(struct sa_listener_key)'],
      ['listener_key.ip', 'offsetof(struct sa_listener_key, ip)'],
      ['listener_key.port', 'offsetof(struct sa_listener_key, port)'],
      ['listener_key.netns', 'offsetof(struct sa_listener_key, netns)'],
      ['lpm_key.size', 'sizeof(struct sa_lpm_key)'],
      ['lpm_key.prefixlen', 'offsetof(struct sa_lpm_key, prefixlen)'],
      ['lpm_key.ip', 'offsetof(struct sa_lpm_key, ip)'],
      ['pair.size', 'sizeof(struct sa_pair)'],
      ['pair.state', 'offsetof(struct sa_pair, state)'],
      ['pair.clientUid', 'offsetof(struct sa_pair, client_uid)'],
      ['pair.createdNs', 'offsetof(struct sa_pair, created_ns)'],
      ['pair.clientNetns', 'offsetof(struct sa_pair, client_netns)'],
      ['pair.serverNetns', 'offsetof(struct sa_pair, server_netns)'],
      ['pair.dstIp', 'offsetof(struct sa_pair, dst_ip)'],
      ['pair.serverIp', 'offsetof(struct sa_pair, server_ip)'],
      ['pair.dstPort', 'offsetof(struct sa_pair, dst_port)'],
      ['pair.serverPort', 'offsetof(struct sa_pair, server_port)'],
      ['pair.serverUid', 'offsetof(struct sa_pair, server_uid)'],
      ['pair.shapeSlot', 'offsetof(struct sa_pair, shape_slot)'],
      ['pair.shapeToken', 'offsetof(struct sa_pair, shape_token)'],
      ['pair.shape', 'offsetof(struct sa_pair, shape)'],
      ['shape.size', 'sizeof(struct sa_shape)'],
      ['shape.lastSender', 'offsetof(struct sa_shape, last_sender)'],
      ['shape.msgs', 'offsetof(struct sa_shape, msgs)'],
      ['shape.bytes', 'offsetof(struct sa_shape, bytes)'],
      ['shape.turns', 'offsetof(struct sa_shape, turns)'],
      ['shape_slot.size', 'sizeof(struct sa_shape_slot)'],
      ['shape_slot.owner', 'offsetof(struct sa_shape_slot, owner)'],
      ['shape_slot.shape', 'offsetof(struct sa_shape_slot, shape)'],
      ['service_key.size', 'sizeof(struct sa_service_key)'],
      ['service_key.ip', 'offsetof(struct sa_service_key, ip)'],
      ['service_key.port', 'offsetof(struct sa_service_key, port)'],
      ['service_key.netns', 'offsetof(struct sa_service_key, netns)'],
      ['service.size', 'sizeof(struct sa_service)'],
      ['service.connsAccelerated', 'offsetof(struct sa_service, conns_accelerated)'],
      ['service.connsPlain', 'offsetof(struct sa_service, conns_plain)'],
      ['service.connsClosed', 'offsetof(struct sa_service, conns_closed)'],
      ['service.lifetimeNs', 'offsetof(struct sa_service, lifetime_ns)'],
      ['service.msgs', 'offsetof(struct sa_service, msgs)'],
      ['service.bytes', 'offsetof(struct sa_service, bytes)'],
      ['service.turns', 'offsetof(struct sa_service, turns)'],
      ['service.lastSeenNs', 'offsetof(struct sa_service, last_seen_ns)'],
      ['service.serverPort', 'offsetof(struct sa_service, server_port)'],
      ['service.path', 'offsetof(struct sa_service, path)'],
      ['path.crossNetns', 'SA_PATH_CROSS_NETNS'],
      ['path.mesh', 'SA_PATH_MESH'],
      ['decision.size', 'sizeof(struct sa_decision)'],
      ['decision.verdict', 'offsetof(struct sa_decision, verdict)'],
      ['decision.explorePermille', 'offsetof(struct sa_decision, explore_permille)'],
      ['decision.reason', 'offsetof(struct sa_decision, reason)'],
      ['decision.savedNsPerConn', 'offsetof(struct sa_decision, saved_ns_per_conn)'],
      ['decision.evidenceConns', 'offsetof(struct sa_decision, evidence_conns)'],
      ['verdict.accelerate', 'SA_VERDICT_ACCELERATE'],
      ['verdict.plain', 'SA_VERDICT_PLAIN'],
      ['reason.none', 'SA_REASON_NONE'],
      ['reason.gains', 'SA_REASON_GAINS'],
      ['reason.short-connections', 'SA_REASON_SHORT_CONNS'],
      ['reason.small-writes', 'SA_REASON_SMALL_WRITES'],
      ['policy.size', 'sizeof(struct sa_policy)'],
      ['policy.adaptive', 'offsetof(struct sa_policy, adaptive)'],
      ['sk_state.size', 'sizeof(struct sa_sk_state)'],
      ['sk_state.flags', 'offsetof(struct sa_sk_state, flags)'],
      ['sk_state.insertedNs', 'offsetof(struct sa_sk_state, inserted_ns)'],
      ['sk_state.key', 'offsetof(struct sa_sk_state, key)'],
      ['sk_state.bytesRedirected', 'offsetof(struct sa_sk_state, bytes_redirected)'],
      ['sk_state.shapeToken', 'offsetof(struct sa_sk_state, shape_token)'],
      ['sk_state.shapeSlot', 'offsetof(struct sa_sk_state, shape_slot)'],
      ['sk_flags.inserted', 'SA_SK_INSERTED'],
      ['sk_flags.client', 'SA_SK_CLIENT'],
      ['sk_flags.removed', 'SA_SK_REMOVED'],
      ['sk_flags.plain', 'SA_SK_PLAIN'],
      ['bytes_record.size', 'sizeof(struct sa_bytes_record)'],
      ['bytes_record.key', 'offsetof(struct sa_bytes_record, key)'],
      ['bytes_record.flags', 'offsetof(struct sa_bytes_record, flags)'],
      ['bytes_record.bytesRedirected', 'offsetof(struct sa_bytes_record, bytes_redirected)'],
      ['mesh_preset.size', 'sizeof(struct sa_mesh_preset)'],
      ['mesh_preset.scope', 'offsetof(struct sa_mesh_preset, scope)'],
      ['mesh_preset.proxyUid', 'offsetof(struct sa_mesh_preset, proxy_uid)'],
      ['mesh_preset.outboundPort', 'offsetof(struct sa_mesh_preset, outbound_port)'],
      ['mesh_preset.inboundPort', 'offsetof(struct sa_mesh_preset, inbound_port)'],
      ['mesh_preset.acceleratePlain', 'offsetof(struct sa_mesh_preset, accelerate_plain)'],
      ['mesh_scope.off', 'SA_MESH_OFF'],
      ['mesh_scope.detect', 'SA_MESH_DETECT'],
      ['mesh_scope.everywhere', 'SA_MESH_EVERYWHERE'],
      ['mesh_netns.size', 'sizeof(struct sa_mesh_netns)'],
      ['mesh_netns.preset', 'offsetof(struct sa_mesh_netns, preset)'],
      ['mesh_netns.listeners', 'offsetof(struct sa_mesh_netns, listeners)'],
      ['mesh_preset_slots', 'SA_MESH_PRESETS'],
      ['meta.size', 'sizeof(struct sa_meta)'],
      ['meta.magic', 'offsetof(struct sa_meta, magic)'],
      ['meta.layoutVersion', 'offsetof(struct sa_meta, layout_version)'],
      ['stats.size', 'sizeof(struct sa_stats)'],
      ['layout_version', 'SA_LAYOUT_VERSION'],
      ['meta_magic', 'SA_META_MAGIC'],
      ...STAT_FIELDS.map((f): [string, string] => [`stats.${f}`, `offsetof(struct sa_stats, ${f})`]),
    ];
    const src = [
      '#include <stdio.h>',
      '#include <stddef.h>',
      '#include <linux/types.h>',
      '#include "sockaccel.h"',
      'int main(void) {',
      ...fields.map(([name, expr]) => `  printf("%s=%lu\\n", "${name}", (unsigned long)(${expr}));`),
      '  return 0;',
      '}',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'probe.c'), src);
    execFileSync('cc', ['-I', HEADER_DIR, '-o', path.join(dir, 'probe'), path.join(dir, 'probe.c')]);
    const out = execFileSync(path.join(dir, 'probe'), { encoding: 'utf8' });
    return Object.fromEntries(out.trim().split('\n').map((l) => l.split('=')).map(([k, v]) => [k, Number(v)]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('every struct size and offset matches bpf/sockaccel.h', (t) => {
  const c = compileLayoutProbe();
  const mirror: Record<string, Record<string, number>> = {
    conn_key: CONN_KEY, listener_key: LISTENER_KEY, lpm_key: LPM_KEY, pair: PAIR, shape: SHAPE, shape_slot: SHAPE_SLOT, meta: META,
    sk_state: SK_STATE, sk_flags: SK_FLAGS, bytes_record: BYTES_RECORD,
    mesh_preset: MESH_PRESET, mesh_scope: MESH_SCOPE, mesh_netns: MESH_NETNS,
    service_key: SERVICE_KEY, service: SERVICE, path: PATH, decision: DECISION, verdict: VERDICT, reason: REASON, policy: POLICY,
  };
  for (const [struct, fields] of Object.entries(mirror)) {
    for (const [field, value] of Object.entries(fields)) t.is(value, c[`${struct}.${field}`], `${struct}.${field}`);
  }
  t.is(STATS_SIZE, c['stats.size']);
  STAT_FIELDS.forEach((f, i) => t.is(i * 8, c[`stats.${f}`], `stats.${f} order`));
  t.is(MESH_PRESET_SLOTS, c.mesh_preset_slots);
  t.is(LAYOUT_VERSION, c.layout_version);
  t.is(META_MAGIC, c.meta_magic);
});

test('per-CPU stats are summed over every CPU slot', (t) => {
  const ncpus = 3;
  const buf = Buffer.alloc(ncpus * STATS_SIZE);
  for (let cpu = 0; cpu < ncpus; cpu++) {
    buf.writeBigUInt64LE(BigInt(cpu + 1), cpu * STATS_SIZE); // sockets_inserted
    buf.writeBigUInt64LE(10n, cpu * STATS_SIZE + STAT_FIELDS.indexOf('bytes_redirected') * 8);
  }
  const s = sumPerCpuStats(buf, ncpus);
  t.is(s.sockets_inserted, 6n);
  t.is(s.bytes_redirected, 30n);
  t.is(s.msgs_passed, 0n);
});

test('port bitmap sets the bit the BPF side tests (word port>>6, bit port&63, little-endian)', (t) => {
  const bm = portBitmap([0, 80, 65535]);
  const bit = (p: number) => (bm.readBigUInt64LE((p >> 6) * 8) >> BigInt(p & 63)) & 1n;
  t.is(bit(80), 1n);
  t.is(bit(0), 1n);
  t.is(bit(65535), 1n);
  t.is(bit(81), 0n);
  t.is(bm.length, 8192);
});

test('LPM keys round-trip and IPv4 prefixes live in the mapped space', (t) => {
  const key = encodeLpmKey(parsePrefix('10.244.0.0/16'));
  t.is(key.readUInt32LE(0), 112);
  t.is(key.subarray(4).toString('hex'), '00000000000000000000ffff0af40000');
  t.deepEqual(decodeLpmKey(key), parsePrefix('10.244.0.0/16'));
});

test('pairing entries decode to both ends of a connection', (t) => {
  const key = Buffer.alloc(CONN_KEY.size);
  parsePrefix('10.213.0.10').addr.copy(key, CONN_KEY.clientIp);
  key.writeUInt32LE(40000, CONN_KEY.clientPort);
  const value = Buffer.alloc(PAIR.size);
  value.writeUInt32LE(2, PAIR.state);
  value.writeUInt32LE(1000, PAIR.clientUid);
  parsePrefix('10.96.0.1').addr.copy(value, PAIR.dstIp);
  value.writeUInt32LE(80, PAIR.dstPort);
  parsePrefix('::1').addr.copy(value, PAIR.serverIp);
  value.writeUInt32LE(15001, PAIR.serverPort);
  value.writeUInt32LE(1337, PAIR.serverUid);
  const c = decodeConnection(key, value);
  t.is(c.keyHex, key.toString('hex'));
  t.is(c.state, 'paired');
  t.is(formatEndpoint(c.client.ip, c.client.port), '10.213.0.10:40000');
  t.is(formatEndpoint(c.dst.ip, c.dst.port), '10.96.0.1:80');
  t.is(formatEndpoint(c.server.ip, c.server.port), '[::1]:15001');
  t.is(c.server.uid, 1337);
  t.is(c.shapeSlot, null, 'token 0: no slot');
});

test('a pairing entry names its shape slot, and the shapes of entry and slot add up', (t) => {
  const value = Buffer.alloc(PAIR.size);
  value.writeUInt32LE(77, PAIR.shapeSlot);
  value.writeBigUInt64LE(4242n, PAIR.shapeToken);
  value.writeBigUInt64LE(2n, PAIR.shape + SHAPE.msgs + 8); // server→client messages
  value.writeBigUInt64LE(1n, PAIR.shape + SHAPE.turns);
  const c = decodeConnection(Buffer.alloc(CONN_KEY.size), value);
  t.deepEqual(c.shapeSlot, { index: 77, token: 4242n });
  const slot = Buffer.alloc(SHAPE_SLOT.size);
  slot.writeBigUInt64LE(5n, SHAPE_SLOT.shape + SHAPE.msgs);
  slot.writeBigUInt64LE(320n, SHAPE_SLOT.shape + SHAPE.bytes);
  slot.writeBigUInt64LE(3n, SHAPE_SLOT.shape + SHAPE.turns + 8);
  t.deepEqual(addShapes(c.shape, decodeShape(slot, SHAPE_SLOT.shape)), { msgs: [5n, 2n], bytes: [320n, 0n], turns: [1n, 3n] });
});
