// The text `sockaccel help [command]` and `--help` print, built from the
// command table and the configuration schema so it cannot drift from them.
import { COMMANDS, GLOBAL_FLAGS, resolveCommand, type CommandSpec, type FlagSpec } from './cli-args';
import { describeConfigSchema } from '../config/config';

function flagLines(flags: Readonly<Record<string, FlagSpec>>): string[] {
  return Object.entries(flags).map(([name, spec]) => {
    const short = spec.short === undefined ? '' : `-${spec.short}, `;
    const value = spec.type === 'string' ? ' <value>' : '';
    return `  ${short}--${name}${value}\n      ${spec.description}`;
  });
}

function configLines(): string[] {
  return describeConfigSchema().map(
    (row) =>
      `  --${row.arg} <value>\n      ${row.doc}\n      ${row.format}; default ${JSON.stringify(row.default)}; env ${row.env}`,
  );
}

const CONFIG_OPTIONS_HEADING =
  'configuration options (also read from the config file and SOCKACCEL_* variables; flags win):';

function commandUsage(name: string, spec: CommandSpec): string {
  const operands = (spec.operands ?? []).map((operand) => ` [${operand}]`).join('');
  const own = flagLines(spec.flags);
  return [
    `usage: sockaccel ${name} [options]${operands}`,
    '',
    spec.summary,
    ...(own.length === 0 ? [] : ['', 'options:', ...own]),
    '',
    ...(spec.configUsage === true
      ? [CONFIG_OPTIONS_HEADING, ...configLines(), '', '-h, --help prints this usage.']
      : ["Every command also accepts -h, --help and the configuration options ('sockaccel help')."]),
  ].join('\n');
}

/** Usage of one command, or of sockaccel as a whole; an unknown topic is a UsageError. */
export function formatUsage(topic?: string): string {
  if (topic !== undefined) {
    const name = resolveCommand(topic);
    return commandUsage(name, COMMANDS[name]);
  }
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return [
    'usage: sockaccel <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, spec]) => `  ${name.padEnd(width)}  ${spec.summary}`),
    '',
    'options (all commands):',
    ...flagLines(GLOBAL_FLAGS),
    '',
    CONFIG_OPTIONS_HEADING,
    ...configLines(),
  ].join('\n');
}
