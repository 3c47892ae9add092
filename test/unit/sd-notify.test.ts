import test from 'ava';
import pino from 'pino';
import { createNotifier, statusLine, watchdogUsec } from '../../src/daemon/sd-notify';

test('watchdogUsec reads WATCHDOG_USEC and WATCHDOG_PID as sd_watchdog_enabled does', (t) => {
  t.is(watchdogUsec({}, 42), undefined, 'no watchdog configured');
  t.is(watchdogUsec({ WATCHDOG_USEC: '20000000' }, 42), 20_000_000, 'no WATCHDOG_PID: meant for us');
  t.is(watchdogUsec({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '42' }, 42), 20_000_000);
  t.is(watchdogUsec({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '41' }, 42), undefined, "a child inherited its parent's variables");
  for (const bad of ['0', '', '-5', '2s', '18446744073709551615']) {
    t.is(watchdogUsec({ WATCHDOG_USEC: bad }, 42), undefined, `WATCHDOG_USEC=${bad}`);
  }
  t.is(watchdogUsec({ WATCHDOG_USEC: '1000', WATCHDOG_PID: 'x' }, 42), undefined);
});

test('STATUS= text is kept to one line', (t) => {
  t.is(statusLine('2 sockets accelerated,\n  10 bytes redirected\r\n'), '2 sockets accelerated, 10 bytes redirected');
});

test('outside systemd every notification is a no-op and libsystemd is not needed', (t) => {
  const notifier = createNotifier(pino({ level: 'silent' }), { WATCHDOG_USEC: '1000' });
  t.false(notifier.enabled);
  notifier.ready('x');
  notifier.status('x');
  notifier.stopping('x');
  const stop = notifier.startWatchdog();
  stop();
  t.pass();
});
