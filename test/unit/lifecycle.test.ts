import test from 'ava';
import pino from 'pino';
import { Lifecycle } from '../../src/daemon/lifecycle';

const silent = pino({ level: 'silent' });

test('closers run in reverse start order', async (t) => {
  const order: string[] = [];
  const lc = new Lifecycle(silent);
  for (const name of ['a', 'b', 'c']) lc.add(name, () => void order.push(name));
  t.true(await lc.stop(1000));
  t.deepEqual(order, ['c', 'b', 'a']);
});

test('a failing closer does not stop the others, and is reported', async (t) => {
  const order: string[] = [];
  const lc = new Lifecycle(silent);
  lc.add('a', () => void order.push('a'));
  lc.add('b', () => {
    throw new Error('boom');
  });
  t.false(await lc.stop(1000));
  t.deepEqual(order, ['a']);
});

test('the deadline bounds a hung closer, and stop is idempotent', async (t) => {
  const lc = new Lifecycle(silent);
  lc.add('hung', () => new Promise(() => {}));
  const started = Date.now();
  const first = lc.stop(100);
  t.is(lc.stop(5000), first);
  t.false(await first);
  t.true(Date.now() - started < 2000);
});
