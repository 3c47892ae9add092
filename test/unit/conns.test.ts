import test from 'ava';
import { formatAge, formatConns, matches, parseConnsFilter, toRow } from '../../src/conns';
import { connBytesFromRecords } from '../../src/conns/bytes';
import { BYTES_RECORD, SK_FLAGS } from '../../src/kernel/bpf-layout';
import type { Connection } from '../../src/kernel/bpf-layout';
import { parseIp } from '../../src/config/ip-prefix';
import { UsageError } from '../../src/common/errors';

function conn(over: Partial<Connection> = {}): Connection {
  return {
    keyHex: '00'.repeat(32),
    client: { ip: parseIp('10.1.0.5'), port: 40000, uid: 1000, netns: 11n },
    dst: { ip: parseIp('10.1.0.9'), port: 80 },
    server: { ip: parseIp('10.1.0.9'), port: 15006, uid: 1337, netns: 12n },
    state: 'paired',
    createdNs: 5_000_000_000n,
    shape: { msgs: [3n, 3n], bytes: [192n, 192n], turns: [3n, 3n] },
    shapeSlot: null,
    ...over,
  };
}

test('filters: --port and --addr match either end; bad values are usage errors', (t) => {
  const c = conn();
  t.true(matches(c, {}));
  t.true(matches(c, parseConnsFilter({ port: '40000' })));
  t.true(matches(c, parseConnsFilter({ port: '80' })));
  t.true(matches(c, parseConnsFilter({ port: '15006' })), 'the port the server accepted on (a sidecar) counts');
  t.false(matches(c, parseConnsFilter({ port: '81' })));
  t.true(matches(c, parseConnsFilter({ addr: '10.1.0.9' })));
  t.true(matches(c, parseConnsFilter({ addr: '::ffff:10.1.0.5' })), 'IPv4-mapped spelling finds IPv4');
  t.false(matches(c, parseConnsFilter({ addr: '10.1.0.6' })));
  t.true(matches(c, parseConnsFilter({ addr: '10.1.0.5', port: '80' })));
  t.false(matches(c, parseConnsFilter({ addr: '10.1.0.5', port: '81' })));
  for (const port of ['0', '65536', 'http', '8o', '-1', '']) t.throws(() => parseConnsFilter({ port }), { instanceOf: UsageError });
  for (const addr of ['10.1.0', 'localhost', '10.0.0.0/8', '']) t.throws(() => parseConnsFilter({ addr }), { instanceOf: UsageError });
});

test('age and wall-clock start come from the monotonic clock bpf_ktime_get_ns uses', (t) => {
  const names = new Map([[11n, 'host'], [12n, 'cni-1234']]);
  const row = toRow(conn(), { monoNs: 65_500_000_000n, wallMs: Date.parse('2026-01-01T00:01:00.500Z') }, names, null);
  t.is(row.ageSeconds, 60.5);
  t.is(row.since, '2026-01-01T00:00:00.000Z');
  t.is(row.client, '10.1.0.5:40000');
  t.is(row.destination, '10.1.0.9:80');
  t.is(row.server, '10.1.0.9:15006');
  t.is(row.clientNetns, 'host');
  t.is(row.serverNetns, 'cni-1234');
  t.is(toRow(conn({ client: { ip: parseIp('::1'), port: 5, uid: 0, netns: 99n } }), { monoNs: 0n, wallMs: 0 }, names, null).clientNetns, 'cookie:99');
  t.is(toRow(conn(), { monoNs: 0n, wallMs: 0 }, names, null).ageSeconds, 0, 'a clock behind the entry is not a negative age');
});

test('ages read naturally', (t) => {
  t.is(formatAge(1.25), '1.3s');
  t.is(formatAge(62), '1m02s');
  t.is(formatAge(3 * 3600 + 5 * 60), '3h05m');
  t.is(formatAge(2 * 86400 + 3600), '2d01h');
});

test('the table has a header, one line per connection and a count', (t) => {
  const at = { monoNs: 6_000_000_000n, wallMs: 0 };
  const row = toRow(conn({ client: { ip: parseIp('fd00::5'), port: 1, uid: 0, netns: 1n } }), at, new Map(), { clientToServer: 1048576, serverToClient: 0 });
  const text = formatConns([row, toRow(conn(), at, new Map(), null, new Map([['10.1.0.9:80', 'plain (short-connections), explored']]))]);
  const lines = text.trimEnd().split('\n');
  t.regex(lines[0], /^CLIENT +DESTINATION +SERVER +NETNS \(CLIENT\/SERVER\) +UID \(C\/S\) +BYTES C>S +BYTES S>C +SERVICE +MSGS C>S\/S>C +TURNS C>S\/S>C +DECISION +AGE +SINCE$/);
  t.regex(lines[1], /^\[fd00::5\]:1 +10\.1\.0\.9:80 +10\.1\.0\.9:15006 +cookie:1\/cookie:12 +0\/1337 +1048576 +0 +10\.1\.0\.9:80 +3\/3 +3\/3 +learning +1\.0s/);
  t.regex(lines[2], / 1000\/1337 +- +- +10\.1\.0\.9:80 +3\/3 +3\/3 +plain \(short-connections\), explored +1\.0s /, 'bytes that could not be read show as -');
  t.is(lines[3], '2 accelerated connections');
  t.regex(formatConns([]), /0 accelerated connections/);
});

test('iterator records join into per-direction bytes by connection key', (t) => {
  const record = (keyByte: number, flags: number, bytes: bigint) => {
    const r = Buffer.alloc(BYTES_RECORD.size);
    r.fill(keyByte, BYTES_RECORD.key, BYTES_RECORD.key + 32);
    r.writeUInt32LE(flags, BYTES_RECORD.flags);
    r.writeBigUInt64LE(bytes, BYTES_RECORD.bytesRedirected);
    return r;
  };
  const data = Buffer.concat([
    record(1, SK_FLAGS.inserted | SK_FLAGS.client, 1048576n),
    record(2, SK_FLAGS.inserted, 7n), // a server whose client is not in the output (closed meanwhile)
    record(1, SK_FLAGS.inserted, 262144n),
  ]);
  const bytes = connBytesFromRecords(data);
  t.deepEqual(bytes.get('01'.repeat(32)), { clientToServer: 1048576, serverToClient: 262144 });
  t.deepEqual(bytes.get('02'.repeat(32)), { clientToServer: 0, serverToClient: 7 });
  t.is(bytes.size, 2);
  t.deepEqual(connBytesFromRecords(Buffer.alloc(0)), new Map());
  t.throws(() => connBytesFromRecords(data.subarray(1)), { message: /not whole 48-byte records/ });
});

test('a connection counts for the service where its client connected; on loopback, per client namespace', (t) => {
  const at = { monoNs: 0n, wallMs: 0 };
  const shape = { msgs: [120n, 64n] as [bigint, bigint], bytes: [7680n, 4096n] as [bigint, bigint], turns: [60n, 60n] as [bigint, bigint] };
  const remote = toRow(conn({ shape }), at, new Map(), null);
  t.like(remote, { service: '10.1.0.9:80', msgs: [120, 64], turns: [60, 60], decision: 'learning' });
  const local = conn({ dst: { ip: parseIp('127.0.0.1'), port: 8080 }, client: { ip: parseIp('127.0.0.1'), port: 5, uid: 0, netns: 4097n } });
  t.is(toRow(local, at, new Map(), null).service, '127.0.0.1:8080@netns 4097');
  const v6 = conn({ dst: { ip: parseIp('::1'), port: 8080 }, client: { ip: parseIp('::1'), port: 5, uid: 0, netns: 7n } });
  t.is(toRow(v6, at, new Map(), null).service, '[::1]:8080@netns 7');
});
