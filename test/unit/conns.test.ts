import test from 'ava';
import { formatAge, formatConns, matches, parseConnsFilter, toRow } from '../../src/conns';
import type { Connection } from '../../src/bpf-layout';
import { parseIp } from '../../src/ip-prefix';
import { UsageError } from '../../src/errors';

function conn(over: Partial<Connection> = {}): Connection {
  return {
    client: { ip: parseIp('10.1.0.5'), port: 40000, uid: 1000, netns: 11n },
    dst: { ip: parseIp('10.1.0.9'), port: 80 },
    server: { ip: parseIp('10.1.0.9'), port: 15006, uid: 1337, netns: 12n },
    state: 'paired',
    createdNs: 5_000_000_000n,
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
  const row = toRow(conn(), { monoNs: 65_500_000_000n, wallMs: Date.parse('2026-01-01T00:01:00.500Z') }, names);
  t.is(row.ageSeconds, 60.5);
  t.is(row.since, '2026-01-01T00:00:00.000Z');
  t.is(row.client, '10.1.0.5:40000');
  t.is(row.destination, '10.1.0.9:80');
  t.is(row.server, '10.1.0.9:15006');
  t.is(row.clientNetns, 'host');
  t.is(row.serverNetns, 'cni-1234');
  t.is(toRow(conn({ client: { ip: parseIp('::1'), port: 5, uid: 0, netns: 99n } }), { monoNs: 0n, wallMs: 0 }, names).clientNetns, 'cookie:99');
  t.is(toRow(conn(), { monoNs: 0n, wallMs: 0 }, names).ageSeconds, 0, 'a clock behind the entry is not a negative age');
});

test('ages read naturally', (t) => {
  t.is(formatAge(1.25), '1.3s');
  t.is(formatAge(62), '1m02s');
  t.is(formatAge(3 * 3600 + 5 * 60), '3h05m');
  t.is(formatAge(2 * 86400 + 3600), '2d01h');
});

test('the table has a header, one line per connection and a count', (t) => {
  const row = toRow(conn({ client: { ip: parseIp('fd00::5'), port: 1, uid: 0, netns: 1n } }), { monoNs: 6_000_000_000n, wallMs: 0 }, new Map());
  const text = formatConns([row]);
  const lines = text.trimEnd().split('\n');
  t.regex(lines[0], /^CLIENT +DESTINATION +SERVER +NETNS/);
  t.regex(lines[1], /^\[fd00::5\]:1 +10\.1\.0\.9:80 +10\.1\.0\.9:15006 +cookie:1\/cookie:12 +0\/1337 +1\.0s/);
  t.is(lines[2], '1 accelerated connection');
  t.regex(formatConns([]), /0 accelerated connections/);
});
