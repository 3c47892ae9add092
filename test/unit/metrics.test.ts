import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatListenAddress, isLoopback, parseListenAddress } from '../../src/metrics/address';
import { createDaemonMetrics, STAT_SERIES } from '../../src/metrics/registry';
import { InsertFailureWarning } from '../../src/metrics/insert-failures';
import { STAT_FIELDS, type Stats } from '../../src/kernel/bpf-layout';
import { loadConfig } from '../../src/config/config';
import { ConfigError } from '../../src/common/errors';

function stats(values: Partial<Record<keyof Stats, bigint>> = {}): Stats {
  return Object.fromEntries(STAT_FIELDS.map((f) => [f, values[f] ?? 0n])) as Stats;
}

test('listen addresses: IP literals with a port; IPv6 in brackets', (t) => {
  t.deepEqual(parseListenAddress('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  t.deepEqual(parseListenAddress('[::1]:9464'), { host: '::1', port: 9464 });
  t.deepEqual(parseListenAddress('0.0.0.0:1'), { host: '0.0.0.0', port: 1 });
  for (const bad of ['127.0.0.1', ':9464', 'localhost:9464', '::1:9464', '[127.0.0.1]:9464', '1.2.3.4:0', '1.2.3.4:65536', '1.2.3.4:http', '[::1]', '']) {
    t.throws(() => parseListenAddress(bad), undefined, bad);
  }
  t.is(formatListenAddress({ host: '::1', port: 1 }), '[::1]:1');
  t.true(isLoopback('127.0.0.1'));
  t.true(isLoopback('127.8.0.1'));
  t.true(isLoopback('::1'));
  t.false(isLoopback('0.0.0.0'));
  t.false(isLoopback('::'));
  t.false(isLoopback('10.0.0.1'));
});

test('metrics config: off by default on loopback; bad values are configuration errors', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockaccel-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, '{}');
  const env = { SOCKACCEL_CONFIG: file };
  const defaults = loadConfig({ env });
  t.false(defaults.metricsEnabled);
  t.is(defaults.metricsAddress, '127.0.0.1:9464');
  t.true(loadConfig({ env, argv: ['--metrics-enabled=true', '--metrics-address=[::1]:9100'] }).metricsEnabled);
  for (const argv of [['--metrics-enabled=yes'], ['--metrics-address=0.0.0.0'], ['--metrics-address=example.com:9464'], ['--metrics-address=127.0.0.1:70000']]) {
    const err = t.throws(() => loadConfig({ env, argv }), { instanceOf: ConfigError }, argv[0]);
    t.regex(err!.message, /metrics(Enabled|Address)/);
  }
});

test('every stats counter is exposed, grouped by metric with labels', async (t) => {
  let current = stats({ sockets_inserted: 10n, sockets_removed: 4n, insert_fail_full: 2n, bytes_redirected: 1234n, bytes_passed: 5n, skipped_port: 3n });
  const m = createDaemonMetrics(() => current, { version: '9.9.9', kernel: '6.18.44', programIds: { sockops: 12, toServer: 13 }, capacities: { clients: 16 } });
  const text = await m.registry.metrics();
  t.regex(text, /^sockaccel_sockets_inserted_total 10$/m);
  t.regex(text, /^sockaccel_insert_failures_total\{reason="map_full"\} 2$/m);
  t.regex(text, /^sockaccel_insert_failures_total\{reason="other"\} 0$/m);
  t.regex(text, /^sockaccel_bytes_total\{path="redirected"\} 1234$/m);
  t.regex(text, /^sockaccel_bytes_total\{path="passed"\} 5$/m);
  t.regex(text, /^sockaccel_connections_skipped_total\{reason="port"\} 3$/m);
  t.regex(text, /^sockaccel_accelerated_sockets 6$/m);
  t.regex(text, /^sockaccel_map_capacity_entries\{map="clients"\} 16$/m);
  t.regex(text, /^sockaccel_info\{version="9\.9\.9",kernel="6\.18\.44",sockops_program_id="12",to_server_program_id="13"\} 1$/m);
  t.regex(text, /# TYPE sockaccel_messages_total counter/);
  // one series per counter, no more
  t.is(text.split('\n').filter((l) => /^sockaccel_\w+_total[{ ]/.test(l)).length, Object.keys(STAT_SERIES).length);

  current = stats({ sockets_inserted: 11n });
  t.regex(await m.registry.metrics(), /^sockaccel_sockets_inserted_total 10$/m, 'values change only on refresh');
  m.refresh();
  t.regex(await m.registry.metrics(), /^sockaccel_sockets_inserted_total 11$/m);
});

test('metrics never carry addresses or ports as labels', async (t) => {
  const m = createDaemonMetrics(() => stats(), { version: '1', kernel: 'k', programIds: { sockops: 3 }, capacities: { clients: 16 } });
  const pairs = [...(await m.registry.metrics()).matchAll(/(\w+)="([^"]*)"/g)].map((x) => ({ name: x[1], value: x[2] }));
  const allowed = new Set(['map', 'path', 'reason', 'version', 'kernel', 'sockops_program_id']);
  t.deepEqual(pairs.filter((p) => !allowed.has(p.name)), []);
  t.deepEqual(pairs.filter((p) => /^\d+\.\d+\.\d+\.\d+$|:.*:/.test(p.value)), []);
});

test('map-full warnings: at most one a minute, with what was missed since the last one', (t) => {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const log = { warn: (obj: Record<string, unknown>, msg: string) => void lines.push({ obj, msg }) } as never;
  let now = 0;
  const w = new InsertFailureWarning(log, 65535, 60_000, () => now);
  w.observe(stats({ insert_fail_full: 7n }));
  t.is(lines.length, 0, 'failures from before the daemon started are not reported');
  now = 1000;
  w.observe(stats({ insert_fail_full: 10n }));
  t.is(lines.length, 1);
  t.is(lines[0].obj.missed, '3');
  t.regex(lines[0].msg, /raise mapSize above 65535/);
  now = 30_000;
  w.observe(stats({ insert_fail_full: 15n }));
  t.is(lines.length, 1, 'rate-limited');
  now = 61_000;
  w.observe(stats({ insert_fail_full: 20n }));
  t.is(lines.length, 2);
  t.is(lines[1].obj.missed, '10', 'the suppressed failures are included');
  now = 200_000;
  w.observe(stats({ insert_fail_full: 20n }));
  t.is(lines.length, 2, 'no new failures, no warning');
});
