// What status and the metrics show of the adaptive policy, from fabricated
// map contents: the service rows, the status text and the aggregate series.
import test from 'ava';
import { formatServiceTable, serviceRows, adaptiveSummary, whyOf } from '../../src/adaptive/report';
import { formatStatus, type StatusReport } from '../../src/cli/status';
import { createDaemonMetrics } from '../../src/metrics/registry';
import { STAT_FIELDS, type Stats } from '../../src/kernel/bpf-layout';
import { parseIp } from '../../src/config/ip-prefix';
import { serviceId, type Decision, type ServiceCounters, type ServiceEntry, type ServiceKey } from '../../src/kernel/services';

function entry(ip: string, port: number, netns: bigint, c: Partial<ServiceCounters>): ServiceEntry {
  const key: ServiceKey = { ip: parseIp(ip), port, netns };
  return {
    key,
    id: serviceId(key),
    counters: {
      connsAccelerated: 0n,
      connsPlain: 0n,
      connsClosed: 0n,
      lifetimeNs: 0n,
      msgs: [0n, 0n],
      bytes: [0n, 0n],
      turns: [0n, 0n],
      lastSeenNs: 0n,
      serverPort: port,
      ...c,
    },
  };
}

const oneShot = entry('127.0.0.1', 8080, 4097n, {
  connsAccelerated: 25n,
  connsPlain: 975n,
  connsClosed: 25n,
  lifetimeNs: 25n * 180_000n,
  msgs: [25n, 25n],
  bytes: [1600n, 1600n],
  turns: [25n, 25n],
});
const keepAlive = entry('10.0.0.5', 6379, 0n, {
  connsAccelerated: 4n,
  connsClosed: 2n,
  lifetimeNs: 2n * 12_000_000_000n,
  msgs: [10_000n, 10_000n],
  bytes: [640_000n, 640_000n],
  turns: [10_000n, 10_000n],
  serverPort: 15006,
});
const learning = entry('127.0.0.1', 9000, 4097n, { connsAccelerated: 3n });
const plainDecision: Decision = { verdict: 'plain', explorePermille: 20, reason: 'short-connections', savedNsPerConn: -17_995, evidenceConns: 25 };
const gainsDecision: Decision = { verdict: 'accelerate', explorePermille: 0, reason: 'gains', savedNsPerConn: 29_970_000, evidenceConns: 4 };
const evicted: ServiceKey = { ip: parseIp('10.0.0.7'), port: 80, netns: 0n };
const decisions = new Map([
  [oneShot.id, { key: oneShot.key, decision: plainDecision }],
  [keepAlive.id, { key: keepAlive.key, decision: gainsDecision }],
  [serviceId(evicted), { key: evicted, decision: { ...plainDecision, reason: 'small-writes' as const, savedNsPerConn: -2_500_000 } }],
]);

test('service rows: shape from the counters, decision and why from sa_decisions, busiest first', (t) => {
  const rows = serviceRows([learning, keepAlive, oneShot], decisions);
  t.deepEqual(rows.map((r) => r.service), ['127.0.0.1:8080@netns 4097', '10.0.0.5:6379', '127.0.0.1:9000@netns 4097', '10.0.0.7:80']);
  t.like(rows[0], {
    serverPort: 8080,
    connsAccelerated: 25,
    connsPlain: 975,
    turnsPerConn: 2,
    msgsPerTurn: 1,
    avgWriteBytes: 64,
    avgLifetimeMs: 0.18,
    state: 'plain',
    reason: 'short-connections',
    why: 'short connections: loses 18 µs per connection (over 25 connections); 2% still accelerated to keep learning',
  });
  t.like(rows[1], { serverPort: 15006, turnsPerConn: 5000, state: 'accelerate', reason: 'gains', why: 'saves 30 ms per connection (over 4 connections)' });
  t.like(rows[2], { state: 'learning', turnsPerConn: 0, msgsPerTurn: null, avgLifetimeMs: null, why: 'learning (0 connections closed): accelerated' });
  t.like(rows[3], { state: 'plain', reason: 'small-writes', serverPort: 0 });
  t.regex(rows[3].why, /^small writes: loses 2\.5 ms .*; no recent traffic$/);
});

test('overrides win over decisions in what status says', (t) => {
  const rows = serviceRows([oneShot, keepAlive], decisions, { accelerate: [8080], plain: [6379] });
  t.like(rows.find((r) => r.serverPort === 8080), { state: 'override-accelerate', reason: 'none', why: 'adaptiveOverrides: always accelerated' });
  t.like(rows.find((r) => r.serverPort === 15006), { state: 'override-plain', why: 'adaptiveOverrides: never accelerated' });
  t.is(whyOf('learning', undefined, 1), 'learning (1 connection closed): accelerated');
});

test('the services table: a header, aligned columns, and a cut with a pointer to --json', (t) => {
  const rows = serviceRows([learning, keepAlive, oneShot], decisions);
  const lines = formatServiceTable(rows);
  t.regex(lines[0], /^ {2}SERVICE +SERVER PORT +CONNS ACC\/PLAIN +TURNS\/CONN +MSGS\/TURN +AVG WRITE +LIFETIME +DECISION +WHY$/);
  t.regex(lines[1], /^ {2}127\.0\.0\.1:8080@netns 4097 +8080 +25\/975 +2\.0 +1\.0 +64 B +180 µs +plain \(short-connections\) +short connections: loses 18 µs/);
  t.regex(lines[2], /^ {2}10\.0\.0\.5:6379 +15006 +4\/0 +5000 +1\.0 +64 B +12 s +accelerate \(gains\) +saves 30 ms/);
  t.regex(lines[3], / learning +learning \(0 connections closed\): accelerated$/);
  t.regex(lines[4], /^ {2}10\.0\.0\.7:80 +- +0\/0 +- +- +- +- +plain \(small-writes\)/);
  const cut = formatServiceTable(rows, 2);
  t.is(cut.length, 4);
  t.is(cut[3], '  … and 2 more (--json lists all)');
  t.deepEqual(formatServiceTable([]), ['  none yet']);
});

const report = (adaptive: StatusReport['adaptive']): StatusReport => ({
  pinRoot: '/sys/fs/bpf/sockaccel',
  sockopsMode: 'accepting',
  layoutVersion: 5,
  links: { sockops: null, toServer: null, toClient: null },
  sockets: { clients: 0, servers: 0, capacity: 16 },
  acceleratedSockets: '0',
  pairs: { pending: 0, paired: 0, fallback: 0 },
  listeners: 0,
  localEndpoints: [],
  localEndpointSources: {},
  meshNamespaces: {},
  counters: { skipped_adaptive: '975' },
  adaptive,
});

test('status: the policy in the summary, a services section before the counters', (t) => {
  const text = formatStatus(report({ enabled: true, services: serviceRows([learning, keepAlive, oneShot], decisions) }));
  t.regex(text, /^adaptive policy +on: 4 services \(2 plain, 1 learning\)$/m);
  t.regex(text, /\nservices:\n {2}SERVICE .*\n {2}127\.0\.0\.1:8080@netns 4097 .*\n[^]*\n\ncounters:\n/);
  t.regex(formatStatus(report({ enabled: false, services: [] })), /^adaptive policy +off: every connection that pairs is accelerated; 0 services \(0 plain, 0 learning\) learned$/m);
  const old = formatStatus(report({ enabled: null, services: [] }));
  t.regex(old, /^adaptive policy +unknown \(pins from before the adaptive policy\)$/m);
  t.notRegex(old, /services:/);
  t.is(adaptiveSummary(true, []), 'on: 0 services (0 plain, 0 learning)');
});

test('status --json carries every service row', (t) => {
  const json = JSON.parse(JSON.stringify(report({ enabled: true, services: serviceRows([oneShot], decisions) })));
  t.is(json.adaptive.enabled, true);
  t.like(json.adaptive.services[0], { service: '127.0.0.1:8080@netns 4097', state: 'plain', savedNsPerConn: -17995, evidenceConns: 25 });
});

test('metrics: the adaptive policy in aggregate, every state present, no addresses', async (t) => {
  const stats = Object.fromEntries(STAT_FIELDS.map((f) => [f, 0n])) as Stats;
  const m = createDaemonMetrics(
    () => stats,
    { version: '1', kernel: 'k', programIds: { sockops: 3 }, capacities: { clients: 16 } },
    () => ({
      enabled: true,
      changes: 7,
      services: [
        { decision: 'plain', reason: 'short-connections' },
        { decision: 'plain', reason: 'short-connections' },
        { decision: 'accelerate', reason: 'gains' },
        { decision: 'learning', reason: 'none' },
      ],
    }),
  );
  const text = await m.registry.metrics();
  t.regex(text, /^sockaccel_adaptive_enabled 1$/m);
  t.regex(text, /^sockaccel_adaptive_services\{decision="plain",reason="short_connections"\} 2$/m);
  t.regex(text, /^sockaccel_adaptive_services\{decision="plain",reason="small_writes"\} 0$/m);
  t.regex(text, /^sockaccel_adaptive_services\{decision="accelerate",reason="gains"\} 1$/m);
  t.regex(text, /^sockaccel_adaptive_services\{decision="override",reason="none"\} 0$/m);
  t.regex(text, /^sockaccel_adaptive_decision_changes_total 7$/m);
  t.notRegex(text, /\d+\.\d+\.\d+\.\d+|:\d{2,5}"/);
});
