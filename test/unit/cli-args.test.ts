import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { COMMANDS, parseCommandLine, type CommandName } from '../../src/cli/cli-args';
import { loadConfig } from '../../src/config/config';
import { UsageError } from '../../src/common/errors';

function usageError(argv: string[]): UsageError {
  const err = (() => {
    try {
      parseCommandLine(argv);
    } catch (caught) {
      return caught;
    }
    throw new Error(`parseCommandLine(${JSON.stringify(argv)}) did not throw`);
  })();
  if (!(err instanceof UsageError)) throw err;
  return err;
}

test('a command with configuration flags in both spellings', (t) => {
  const parsed = parseCommandLine(['run', '--pin-root', '/sys/fs/bpf/x', '--local-cidrs=10.0.0.0/8,fd00::/64']);
  t.deepEqual(parsed, {
    command: 'run',
    operands: [],
    configArgv: ['--pin-root=/sys/fs/bpf/x', '--local-cidrs=10.0.0.0/8,fd00::/64'],
    commandFlags: {},
  });
});

test('flags may come before the command', (t) => {
  const parsed = parseCommandLine(['--map-size', '1024', 'status', '--json']);
  t.is(parsed.command, 'status');
  t.deepEqual(parsed.configArgv, ['--map-size=1024']);
  t.deepEqual(parsed.commandFlags, { json: true });
});

test('configArgv feeds loadConfig', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockaccel-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ mapSize: 2048, logLevel: 'warn' }));

  const parsed = parseCommandLine([
    'run',
    '--config',
    file,
    '--map-size=4096',
    '--include-ports',
    '80,443',
    '--cgroup-path=/sys/fs/cgroup/a=b',
  ]);
  const config = loadConfig({ argv: parsed.configArgv, env: { SOCKACCEL_MAP_SIZE: '3000' } });
  t.is(config.config, file);
  t.is(config.mapSize, 4096);
  t.is(config.logLevel, 'warn');
  t.deepEqual(config.includePorts, [80, 443]);
  t.is(config.cgroupPath, '/sys/fs/cgroup/a=b');
});

test('an unknown command is named, with the valid ones and a suggestion', (t) => {
  const err = usageError(['stauts']);
  t.is(err.message, 'unknown command "stauts" (did you mean "status"?)');
  t.is(err.hint, `commands: ${Object.keys(COMMANDS).join(', ')}`);
  t.is(err.exitCode, 64);
  t.is(err.code, 'ERR_USAGE');
});

test('an unknown flag is named, with the valid ones and a suggestion', (t) => {
  const err = usageError(['run', '--pin-rot=/x']);
  t.is(err.message, 'unknown option --pin-rot (did you mean --pin-root?)');
  t.true(err.hint?.includes('--pin-root'));
  t.true(err.hint?.includes('--log-level'));
  t.false(err.hint?.includes('--json'));
});

test('an unknown flag is reported as such even when its value looks like a command', (t) => {
  t.is(usageError(['--frobnicate', 'yes', 'run']).message, 'unknown option --frobnicate');
  t.is(usageError(['run', '-x']).message, 'unknown option -x');
});

test('--json is accepted only by status, doctor, conns and bench', (t) => {
  for (const command of ['status', 'doctor', 'conns', 'bench']) t.deepEqual(parseCommandLine([command, '--json']).commandFlags, { json: true });
  for (const command of ['run', 'help', 'version']) {
    const err = usageError([command, '--json']);
    t.is(err.message, `option --json is not accepted by command "${command}"`);
    t.is(err.hint, '--json is an option of: status, doctor, conns, bench');
  }
  t.is(usageError(['--json']).message, 'option --json is not accepted without a command');
});

test('<command> --help (or -h) is help <command>: the command itself never runs', (t) => {
  for (const command of Object.keys(COMMANDS) as CommandName[]) {
    for (const flag of ['--help', '-h']) {
      const parsed = parseCommandLine([command, flag]);
      t.is(parsed.command, 'help', `${command} ${flag}`);
      t.deepEqual(parsed.operands, [command], `${command} ${flag}`);
    }
  }
  t.deepEqual(parseCommandLine(['-h', 'status']), { command: 'help', operands: ['status'], configArgv: [], commandFlags: {} });
  // Whatever else came with it: flags of other commands, values, operands.
  t.deepEqual(parseCommandLine(['run', '--pin-root=/x', '--json', 'now', '--help']).operands, ['run']);
  t.deepEqual(parseCommandLine(['bench', '--quick', '-h']).operands, ['bench']);
  t.deepEqual(parseCommandLine(['help', 'purge', '--help']).operands, ['purge']);
  t.deepEqual(parseCommandLine(['--help']), { command: 'help', operands: [], configArgv: [], commandFlags: {} });
  t.deepEqual(parseCommandLine(['-h']).operands, []);
  // Still errors: an unknown command or option, and --help with a value.
  t.is(usageError(['stat', '--help']).message, 'unknown command "stat" (did you mean "status"?)');
  t.is(usageError(['run', '--hlep']).message, 'unknown option --hlep (did you mean --help?)');
  t.is(usageError(['run', '--help=yes']).message, 'option --help does not take a value');
});

test('help takes a command as operand; other commands take none', (t) => {
  t.deepEqual(parseCommandLine(['help', 'status']).operands, ['status']);
  t.is(usageError(['help', 'status', 'run']).message, 'unexpected argument "run" for command "help"');
  t.is(usageError(['run', 'now']).message, 'unexpected argument "now" for command "run"');
  t.is(usageError(['run', '--', '--json']).message, 'unexpected argument "--json" for command "run"');
});

test('malformed flags', (t) => {
  t.is(usageError(['run', '--pin-root']).message, 'option --pin-root needs a value');
  t.is(usageError(['status', '--json=yes']).message, 'option --json does not take a value');
  t.is(usageError(['run', '--map-size=1', '--map-size=2']).message, 'option --map-size given more than once');
});

test('no command', (t) => {
  const err = usageError([]);
  t.is(err.message, 'no command given');
  t.true(err.hint?.includes('run, status'));
  t.is(usageError(['--pin-root=/x']).message, 'no command given');
});
