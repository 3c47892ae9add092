import test from 'ava';
import { componentLogger, createLogger } from '../../src/common/log';

function capture(): { destination: { write(line: string): void }; records(): Array<Record<string, unknown>> } {
  const lines: string[] = [];
  return {
    destination: { write: (line: string) => void lines.push(line) },
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

test('JSON records carry name, pid and the component', (t) => {
  const out = capture();
  const root = createLogger({ level: 'info', destination: out.destination });
  root.info('starting');
  componentLogger(root, 'loader').warn({ program: 'sockops_prog' }, 'slow load');

  const [first, second] = out.records();
  t.like(first, { name: 'sockaccel', pid: process.pid, level: 30, msg: 'starting' });
  t.false('component' in (first ?? {}));
  t.like(second, { name: 'sockaccel', component: 'loader', level: 40, program: 'sockops_prog', msg: 'slow load' });
});

test('records below the level are dropped', (t) => {
  const out = capture();
  const root = createLogger({ level: 'warn', destination: out.destination });
  root.info('hidden');
  root.debug('hidden');
  root.error('shown');
  t.deepEqual(
    out.records().map((record) => record.msg),
    ['shown'],
  );
});
