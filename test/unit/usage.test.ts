import test from 'ava';
import { COMMANDS } from '../../src/cli/cli-args';
import { describeConfigSchema } from '../../src/config/config';
import { UsageError } from '../../src/common/errors';
import { formatUsage } from '../../src/cli/usage';

test('the overview lists every command and every configuration flag with its variable', (t) => {
  const text = formatUsage();
  for (const [name, spec] of Object.entries(COMMANDS)) t.true(text.includes(`${name}  `) && text.includes(spec.summary), name);
  for (const row of describeConfigSchema()) {
    t.true(text.includes(`--${row.arg} <value>`), row.arg);
    t.true(text.includes(`env ${row.env}`), row.env);
  }
  t.true(text.includes('-h, --help'));
});

test('a command usage lists its own flags', (t) => {
  const text = formatUsage('status');
  t.true(text.startsWith('usage: sockaccel status [options]'));
  t.true(text.includes('--json'));
  t.true(formatUsage('help').startsWith('usage: sockaccel help [options] [command]'));
});

test('an unknown topic is a usage error', (t) => {
  t.throws(() => formatUsage('stat'), { instanceOf: UsageError, message: 'unknown command "stat" (did you mean "status"?)' });
});
