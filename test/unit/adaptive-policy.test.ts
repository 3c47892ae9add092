// The adaptive policy on the workload shapes of issue 10, with a fixed
// calibration (test/helpers/calibration.ts): which services are left plain, which stay accelerated, and why.
import test from 'ava';
import { TEST_CALIBRATION } from '../helpers/calibration';
import { duration, estimate, EVIDENCE_MESSAGES, exploreShare, hasEvidence, judge, size, type PolicyOptions, type ServiceShape } from '../../src/adaptive/policy';

const OPTS: PolicyOptions = {
  ...TEST_CALIBRATION,
  minConnections: 20,
  explorePermille: 20,
};

/** `conns` closed connections, each with `turns` turns of `msgsPerTurn` messages of `write` bytes. */
function shape(conns: number, turns: number, msgsPerTurn: number, write: number): ServiceShape {
  const msgs = conns * turns * msgsPerTurn;
  return { connsAccelerated: conns, connsClosed: conns, turns: conns * turns, msgs, bytes: msgs * write };
}

const add = (a: ServiceShape, b: ServiceShape): ServiceShape => ({
  connsAccelerated: a.connsAccelerated + b.connsAccelerated,
  connsClosed: a.connsClosed + b.connsClosed,
  msgs: a.msgs + b.msgs,
  bytes: a.bytes + b.bytes,
  turns: a.turns + b.turns,
});

test('one-shot connections (a request and a response each) are left plain: short connections', (t) => {
  const j = judge(shape(40, 2, 1, 64), OPTS);
  t.like(j.decision, { verdict: 'plain', reason: 'short-connections', explorePermille: 20, evidenceConns: 40 });
  // 2 turns save 12 µs, the setup costs 30 µs, 128 bytes save 5 ns
  t.is(j.decision?.savedNsPerConn, 12_000 - 30_000 + 5);
  t.is(j.why, '2.0 turns per connection save 12 µs; setup costs 30 µs: loses 18 µs per connection (short connections)');
});

test('a stream of 1 KiB writes (thousands of messages per turn) is left plain: small writes, even on one connection', (t) => {
  const j = judge(shape(1, 1, 5000, 1024), OPTS);
  t.like(j.decision, { verdict: 'plain', reason: 'small-writes', evidenceConns: 1 });
  t.true(j.estimate.burstCostNs > j.estimate.setupCostNs);
  t.is(j.why, '1.0 turns per connection save 6.0 µs; setup costs 30 µs, 5000 messages per turn (1.0 KiB each) cost 12 ms: loses 12 ms per connection (small writes)');
});

test('the same 1 KiB stream between two network namespaces or on a mesh hop stays accelerated: bursts are a cost only on loopback', (t) => {
  const j = judge({ ...shape(1, 1, 5000, 1024), beyondLoopback: true }, OPTS);
  t.like(j.decision, { verdict: 'accelerate', reason: 'gains' });
  t.is(j.estimate.burstCostNs, 0);
});

test('64 B keep-alive connections (many turns each) stay accelerated', (t) => {
  const j = judge(shape(4, 5000, 1, 64), OPTS);
  t.like(j.decision, { verdict: 'accelerate', reason: 'gains', explorePermille: 0 });
  t.true(j.decision!.savedNsPerConn > 29_000_000);
  t.regex(j.why, /^5000 turns per connection save 30 ms; setup costs 30 µs: saves 30 ms per connection$/);
});

test('a stream of 128 KiB writes stays accelerated: the bytes outweigh the bursts', (t) => {
  // a 128 KiB write reaches the sk_msg program as one message per write
  const j = judge(shape(1, 1, 2000, 128 * 1024), OPTS);
  t.like(j.decision, { verdict: 'accelerate', reason: 'gains' });
  t.true(j.estimate.bytesSavedNs > j.estimate.burstCostNs);
});

test('a mixed service is decided on the total: keep-alive gains outweigh one-shot setups, or not', (t) => {
  const oneShot = shape(100, 2, 1, 64); // 100 requests on their own connections: −18 µs each
  // the same number of requests again, on 2 keep-alive connections: +12 µs per request
  const keepAlive = shape(2, 100, 1, 64);
  t.like(judge(add(oneShot, keepAlive), OPTS).decision, { verdict: 'plain', reason: 'short-connections' });
  // twice as many keep-alive requests as one-shot ones: the gains win
  const busyKeepAlive = shape(2, 400, 1, 64);
  const j = judge(add(oneShot, busyKeepAlive), OPTS);
  t.like(j.decision, { verdict: 'accelerate', reason: 'gains', evidenceConns: 102 });
  // counting connections would have said plain: 100 of 102 lose on their own
  t.is(judge(oneShot, OPTS).decision?.verdict, 'plain');
});

test('too little evidence: no decision, and the why says what is missing', (t) => {
  const few = shape(19, 2, 1, 64);
  const j = judge(few, OPTS);
  t.is(j.decision, null);
  t.is(j.why, 'learning: 19 of 20 connections closed, 38 of 1000 messages');
  // open connections are no evidence: a new keep-alive pool has paid its setups but folded few turns
  t.is(judge({ connsAccelerated: 50, connsClosed: 0, msgs: 10, bytes: 640, turns: 10 }, OPTS).decision, null);
  t.false(hasEvidence(few, 20));
  t.true(hasEvidence(shape(20, 2, 1, 64), 20));
  t.true(hasEvidence({ connsAccelerated: 1, connsClosed: 0, msgs: EVIDENCE_MESSAGES, bytes: 0, turns: 1 }, 20));
});

test('the balance point: exactly zero saved is accelerated', (t) => {
  // 5 turns save 30 µs = one setup
  const j = judge(shape(20, 5, 1, 0), OPTS);
  t.is(j.estimate.savedNs, 0);
  t.like(j.decision, { verdict: 'accelerate', reason: 'gains', savedNsPerConn: 0 });
});

test('the estimate terms follow the formula', (t) => {
  const e = estimate({ connsAccelerated: 2, connsClosed: 2, msgs: 10, bytes: 1_000_000, turns: 4 }, OPTS);
  t.deepEqual(e, { turnsSavedNs: 24_000, bytesSavedNs: 40_000, setupCostNs: 60_000, burstCostNs: 15_000, savedNs: -11_000 });
});

test('decayed (fractional) sums decide the same as whole ones of the same shape', (t) => {
  const whole = shape(40, 2, 1, 64);
  const halved = { ...whole, connsAccelerated: 20.5, connsClosed: 20.5, msgs: 41, bytes: 41 * 64, turns: 41 };
  t.like(judge(halved, OPTS).decision, { verdict: 'plain', reason: 'short-connections' });
});

test('the explored share: what brings 4 × minConnections explored connections per half-life, within 1‰ and the largest share', (t) => {
  // 20 connections, 30 s: 80 per half-life, 2.67 a second
  t.is(exploreShare(0, 20, 20, 30), 20, 'no rate known: the largest share');
  t.is(exploreShare(10, 20, 20, 30), 20, 'a quiet service: the largest share');
  t.is(exploreShare(1000, 20, 20, 30), 3);
  t.is(exploreShare(25_000, 20, 20, 30), 1, 'never below 1‰');
  t.is(exploreShare(25_000, 0, 20, 30), 0, 'off stays off');
});

test('durations and sizes print short', (t) => {
  t.deepEqual([850, 12_000, 5_300, 2_600_000, 1.2e9, -18_000].map(duration), ['850 ns', '12 µs', '5.3 µs', '2.6 ms', '1.2 s', '-18 µs']);
  t.deepEqual([64, 1024, 131072, 1.5 * 1024 * 1024].map(size), ['64 B', '1.0 KiB', '128 KiB', '1.5 MiB']);
});
