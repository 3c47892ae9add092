// The learning loop driven without a kernel: fake sa_services (an LRU of
// fixed capacity, counters that only grow, as the BPF programs keep them),
// a fake sa_decisions (a hash that refuses inserts when full, E2BIG), and a
// clock the test moves.
import test from 'ava';
import { TEST_CALIBRATION } from '../helpers/calibration';
import pino from 'pino';
import { FORGET_HALF_LIVES, Learner, refOf, type LearnerOptions, type ServiceAccess, type ServiceSample } from '../../src/adaptive/learner';
import { NO_COUNTERS, type Decision, type ServiceCounters, type ServiceKey } from '../../src/kernel/services';

const OPTS: LearnerOptions = {
  ...TEST_CALIBRATION,
  minConnections: 20,
  explorePermille: 20,
  halfLifeMs: 10_000,
};

const zero = (): ServiceCounters => ({ ...NO_COUNTERS });

const keyOf = (port: number): ServiceKey => ({ ip: Buffer.from('00000000000000000000ffff7f000001', 'hex'), port, netns: 0n });
const idOf = (k: ServiceKey) => `127.0.0.1:${k.port}`;

class FakeKernel implements ServiceAccess {
  /** Insertion order = LRU order (oldest first). */
  readonly services = new Map<string, ServiceSample>();
  readonly decisions = new Map<string, { key: ServiceKey; decision: Decision }>();
  writes = 0;
  /** bpf_ktime_get_ns() as the programs stamp last_seen_ns. */
  private clock = 1000n;

  constructor(
    private readonly maxServices = 4096,
    private readonly maxDecisions = 4096,
  ) {}

  /** What the BPF side adds when connections of `port` close: `conns` of `turns` turns, `msgsPerTurn` messages of `write` bytes. */
  traffic(port: number, conns: number, turns: number, msgsPerTurn = 1, write = 64): void {
    const key = keyOf(port);
    const id = idOf(key);
    const old = this.services.get(id);
    this.services.delete(id);
    if (!old && this.services.size >= this.maxServices) this.services.delete(this.services.keys().next().value!);
    const c = old?.counters ?? zero();
    const msgs = BigInt(conns * turns * msgsPerTurn);
    const half = (n: bigint) => [n / 2n, n - n / 2n] as [bigint, bigint];
    const lastSeenNs = ++this.clock;
    this.services.set(id, {
      ref: refOf(key),
      lastSeenNs,
      key,
      counters: {
        ...c,
        connsAccelerated: c.connsAccelerated + BigInt(conns),
        connsClosed: c.connsClosed + BigInt(conns),
        msgs: [c.msgs[0] + half(msgs)[0], c.msgs[1] + half(msgs)[1]],
        bytes: [c.bytes[0] + half(msgs * BigInt(write))[0], c.bytes[1] + half(msgs * BigInt(write))[1]],
        turns: [c.turns[0] + half(BigInt(conns * turns))[0], c.turns[1] + half(BigInt(conns * turns))[1]],
        lastSeenNs,
        serverPort: port,
      },
    });
  }

  /** What sock_ops adds when `conns` new connections of `port` are left plain. */
  plainConnections(port: number, conns: number): void {
    const id = idOf(keyOf(port));
    const old = this.services.get(id)!;
    const lastSeenNs = ++this.clock;
    this.services.set(id, { ...old, lastSeenNs, counters: { ...old.counters, connsPlain: old.counters.connsPlain + BigInt(conns), lastSeenNs } });
  }

  readServices(): ServiceSample[] {
    return [...this.services.values()].map((s) => ({ ...s, counters: { ...s.counters } }));
  }
  readDecisions() {
    return new Map(this.decisions);
  }
  writeDecision(key: ServiceKey, decision: Decision): void {
    const id = idOf(key);
    if (!this.decisions.has(id) && this.decisions.size >= this.maxDecisions) throw Object.assign(new Error('E2BIG'), { errno: 7 });
    this.writes++;
    this.decisions.set(id, { key, decision });
  }
  deleteDecision(key: ServiceKey): void {
    if (!this.decisions.delete(idOf(key))) throw Object.assign(new Error('ENOENT'), { errno: 2 });
  }
  verdict(port: number): string | undefined {
    const d = this.decisions.get(idOf(keyOf(port)))?.decision;
    return d && `${d.verdict}/${d.reason}`;
  }
}

function setup(kernel: FakeKernel, opts: Partial<LearnerOptions> = {}) {
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  let now = 1_000_000;
  const learner = new Learner(kernel, { ...OPTS, ...opts }, log, () => now);
  return {
    learner,
    logs,
    advance(ms: number) {
      now += ms;
      learner.tick();
    },
  };
}

test('a one-shot service is decided plain once enough connections closed, logged with from, to, reason and why', (t) => {
  const kernel = new FakeKernel();
  const { learner, logs, advance } = setup(kernel);
  learner.start();
  kernel.traffic(8080, 10, 2);
  advance(250);
  t.is(kernel.verdict(8080), undefined, 'learning: no decision written');
  kernel.traffic(8080, 15, 2);
  advance(250);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  t.like(kernel.decisions.get('127.0.0.1:8080')?.decision, { explorePermille: 20, evidenceConns: 25 });
  const change = logs.filter((l) => l.msg === 'service decision changed');
  t.is(change.length, 1);
  t.like(change[0], { level: 30, service: '127.0.0.1:8080', from: 'learning', to: 'plain (short-connections)', reason: 'short-connections' });
  t.regex(String(change[0].why), /2\.0 turns per connection save 12 µs; setup costs 30 µs/);
  // unchanged decisions are not written again
  const writes = kernel.writes;
  kernel.traffic(8080, 1, 2);
  advance(250);
  t.is(kernel.writes, writes);
});

test('a keep-alive service stays accelerated; a small-write stream is left plain', (t) => {
  const kernel = new FakeKernel();
  const { learner, advance } = setup(kernel);
  learner.start();
  kernel.traffic(6379, 1, 2000);
  kernel.traffic(9000, 1, 2, 3000, 1024);
  advance(250);
  t.is(kernel.verdict(6379), 'accelerate/gains');
  t.is(kernel.verdict(9000), 'plain/small-writes');
});

test('decay: a plain service whose traffic turns keep-alive flips to accelerate after some half-lives, and back', (t) => {
  const kernel = new FakeKernel();
  const { learner, advance } = setup(kernel);
  learner.start();
  // a long one-shot history: 10,000 connections, 180 ms lost
  kernel.traffic(8080, 10_000, 2);
  advance(1000);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  // from now on, the explored connections are keep-alive ones: one per second with 100 turns (+570 µs each)
  const flipAfter = (verdict: string, each: () => void): number => {
    for (let s = 1; s <= FORGET_HALF_LIVES * 10; s++) {
      each();
      advance(1000);
      if (kernel.verdict(8080) === verdict) return s;
    }
    return Infinity;
  };
  const up = flipAfter('accelerate/gains', () => kernel.traffic(8080, 1, 100));
  // without the decay it would take 316 s; with it, a few half-lives, never the first one
  t.log(`flipped to accelerate after ${up} s`);
  t.true(up > 10 && up < 100, `flipped after ${up} s`);
  const down = flipAfter('plain/short-connections', () => kernel.traffic(8080, 50, 2));
  t.true(down < 100, `flipped back after ${down} s`);
});

test('a busy plain service explores a small share, a quiet one the largest; the share follows the rate without a rewrite each round', (t) => {
  const kernel = new FakeKernel();
  const { learner, logs, advance } = setup(kernel);
  learner.start();
  kernel.traffic(8080, 25, 2);
  advance(250);
  const share = () => kernel.decisions.get('127.0.0.1:8080')?.decision.explorePermille;
  t.is(kernel.verdict(8080), 'plain/short-connections');
  t.is(share(), 20, 'no plain connections seen yet: the largest share');
  // 10,000 connections a second left plain (and the explored ones closing):
  // 4 × 20 explored connections per 10 s half-life need 0.08% of them, so 1‰
  const writes = kernel.writes;
  for (let i = 0; i < 240; i++) {
    kernel.plainConnections(8080, 2500);
    kernel.traffic(8080, 2, 2);
    advance(250);
  }
  t.is(share(), 1);
  t.true(kernel.writes - writes <= 6, `${kernel.writes - writes} writes while the rate rose`);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  t.is(logs.filter((l) => l.msg === 'service decision changed').length, 1, 'the share moving is not a decision change');
  t.is(learner.changes, 1);
  // the service quietens to 2 connections a second: the share goes back up
  for (let i = 0; i < 600; i++) {
    if (i % 2 === 0) kernel.plainConnections(8080, 1);
    if (i % 20 === 0) kernel.traffic(8080, 1, 2);
    advance(250);
  }
  t.is(share(), 20);
});

test('explore off (adaptiveExplorePermille 0) stays off whatever the rate', (t) => {
  const kernel = new FakeKernel();
  const { learner, advance } = setup(kernel, { explorePermille: 0 });
  learner.start();
  kernel.traffic(8080, 25, 2);
  advance(250);
  kernel.plainConnections(8080, 5);
  advance(250);
  t.is(kernel.decisions.get('127.0.0.1:8080')?.decision.explorePermille, 0);
});

test('thin evidence keeps a decision: a plain service seeing only its explored connections does not flap', (t) => {
  const kernel = new FakeKernel();
  const { learner, advance } = setup(kernel);
  learner.start();
  kernel.traffic(8080, 40, 2);
  advance(1000);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  for (let s = 0; s < 60; s++) {
    kernel.traffic(8080, 1, 2); // 2% explored: far below 20 closed connections once decayed
    advance(1000);
    t.is(kernel.verdict(8080), 'plain/short-connections');
  }
});

test('a service without traffic for 10 half-lives is forgotten: its decision deleted', (t) => {
  const kernel = new FakeKernel();
  const { learner, logs, advance } = setup(kernel);
  learner.start();
  kernel.traffic(8080, 40, 2);
  advance(1000);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  for (let s = 0; s < FORGET_HALF_LIVES * 10 - 2; s++) advance(1000);
  t.is(kernel.verdict(8080), 'plain/short-connections');
  advance(1000);
  advance(1000);
  t.is(kernel.verdict(8080), undefined);
  t.like(logs.at(-1), { msg: 'service decision changed', from: 'plain (short-connections)', to: 'learning' });
  // still in sa_services: only a baseline is kept, and old counts are not judged again
  t.is(learner.size, 1);
  advance(1000);
  t.is(kernel.verdict(8080), undefined);
});

test('bounded: thousands of services coming and going leave no more state than the maps hold', (t) => {
  const kernel = new FakeKernel(256, 256);
  const { learner, advance } = setup(kernel, { halfLifeMs: 5000 });
  learner.start();
  let maxSize = 0;
  for (let round = 0; round < 100; round++) {
    // 50 new services a round, half one-shot (decided plain), half keep-alive
    for (let i = 0; i < 50; i++) {
      const port = 1024 + round * 50 + i;
      if (i % 2 === 0) kernel.traffic(port, 25, 2);
      else kernel.traffic(port, 1, 2000);
    }
    advance(250);
    t.true(learner.size <= kernel.services.size + kernel.decisions.size, `round ${round}: ${learner.size} tracked`);
    maxSize = Math.max(maxSize, learner.size);
  }
  t.true(maxSize <= 512, `at most ${maxSize} tracked`);
  // after 10 half-lives of silence every decision of an evicted service is gone
  for (let s = 0; s < FORGET_HALF_LIVES * 5 + 2; s++) advance(1000);
  for (const { key } of kernel.decisions.values()) t.true(kernel.services.has(idOf(key)));
  t.true(learner.size <= kernel.services.size);
});

test('a full decisions map: warned once, the service stays accelerated, learning goes on', (t) => {
  const kernel = new FakeKernel(4096, 2);
  const { learner, logs, advance } = setup(kernel);
  learner.start();
  for (const port of [1001, 1002, 1003, 1004]) kernel.traffic(port, 30, 2);
  t.notThrows(() => advance(250));
  t.is(kernel.decisions.size, 2);
  for (let s = 0; s < 5; s++) {
    kernel.traffic(1005, 30, 2);
    t.notThrows(() => advance(250));
  }
  const warnings = logs.filter((l) => l.level === 40);
  t.is(warnings.length, 1);
  t.regex(String(warnings[0].msg), /decisions map is full/);
  t.is(kernel.verdict(1003), undefined);
  // room again (a decision deleted): the next round writes the waiting ones
  kernel.decisions.delete('127.0.0.1:1001');
  advance(250);
  t.is(kernel.decisions.size, 2);
});

test('start keeps pinned decisions and takes the counters as the baseline', (t) => {
  const kernel = new FakeKernel();
  kernel.traffic(8080, 1000, 2); // before this daemon: not judged again
  kernel.decisions.set('127.0.0.1:7000', {
    key: keyOf(7000),
    decision: { verdict: 'plain', reason: 'small-writes', explorePermille: 20, savedNsPerConn: -5, evidenceConns: 30 },
  });
  const { learner, advance } = setup(kernel);
  learner.start();
  advance(250);
  t.is(kernel.verdict(8080), undefined);
  t.is(kernel.verdict(7000), 'plain/small-writes');
  t.is(learner.size, 2);
});

test('a counter that went down (evicted and recreated between reads) counts from zero again', (t) => {
  const kernel = new FakeKernel();
  const { learner, advance } = setup(kernel);
  kernel.traffic(8080, 1, 5000);
  learner.start();
  advance(250);
  kernel.services.clear();
  kernel.traffic(8080, 25, 2); // fewer turns than the baseline: recreated
  advance(250);
  t.is(kernel.verdict(8080), 'plain/short-connections');
});

test('overridden ports get no decision, and lose one they had', (t) => {
  const kernel = new FakeKernel();
  kernel.decisions.set('127.0.0.1:8080', {
    key: keyOf(8080),
    decision: { verdict: 'plain', reason: 'short-connections', explorePermille: 20, savedNsPerConn: -5, evidenceConns: 30 },
  });
  const { learner, advance } = setup(kernel, { overriddenPorts: new Set([8080, 9090]) });
  learner.start();
  kernel.traffic(8080, 40, 2);
  kernel.traffic(9090, 40, 2);
  advance(250);
  t.is(kernel.decisions.size, 0);
  t.regex(learner.learned().find((s) => s.id === '127.0.0.1:9090')!.why, /overridden/);
});

test('a full decisions map gives way: the decision of the service evicted longest ago makes room', (t) => {
  const kernel = new FakeKernel(4, 3);
  const { learner, logs, advance } = setup(kernel);
  learner.start();
  for (const port of [1001, 1002, 1003]) {
    kernel.traffic(port, 30, 2);
    advance(250);
  }
  t.is(kernel.decisions.size, 3);
  // 1001..1003 fall out of the services LRU as new services come; their decisions stay
  for (const port of [2001, 2002, 2003, 2004]) kernel.traffic(port, 1, 1);
  advance(250);
  t.false(kernel.services.has('127.0.0.1:1001'));
  kernel.traffic(3001, 30, 2);
  advance(250);
  t.is(kernel.verdict(3001), 'plain/short-connections');
  t.is(kernel.verdict(1001), undefined, 'the oldest evicted service gave its place');
  t.is(kernel.verdict(1002), 'plain/short-connections');
  t.is(logs.filter((l) => l.level === 40).length, 0, 'no warning: there was room to make');
  t.regex(String(logs.find((l) => l.service === '127.0.0.1:1001' && l.to === 'learning')?.why), /makes room for 127\.0\.0\.1:3001/);
});
