// Command-line parsing: `sockaccel <command> [flags]`. Configuration flags
// (one per config key, named by the schema's `arg`) are accepted by every
// command and passed on to loadConfig; each command may add flags of its own.
// convict silently ignores flags it does not know, so this layer is the one
// that rejects unknown or misplaced flags.
import { parseArgs } from 'node:util';
import { describeConfigSchema } from '../config/config';
import { UsageError } from '../common/errors';
import { suggest } from './suggest';

export interface FlagSpec {
  readonly type: 'boolean' | 'string';
  readonly description: string;
  readonly short?: string;
}

export interface CommandSpec {
  readonly summary: string;
  /** Flags only this command accepts (a name must mean the same in every command). */
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Names of the optional positional operands, in order. */
  readonly operands?: readonly string[];
  /** Its usage lists the configuration options in full: they are what this command is run with. */
  readonly configUsage?: boolean;
}

// To add a command, add an entry; parsing and usage pick it up from here.
export const COMMANDS = {
  run: {
    summary: 'load and attach the programs, then accelerate local connections until stopped',
    flags: {},
    configUsage: true,
  },
  status: {
    summary: 'show whether acceleration is active, with its counters',
    flags: { json: { type: 'boolean', description: 'print the status as JSON' } },
  },
  doctor: {
    summary: 'check the kernel, privileges, bpffs, cgroup, other BPF programs and the daemon\'s pins and links; exit 1 if any check fails',
    flags: { json: { type: 'boolean', description: 'print the checks as JSON' } },
  },
  conns: {
    summary: 'list the accelerated connections: both ends, namespaces, owners and age',
    flags: {
      json: { type: 'boolean', description: 'print the connections as JSON' },
      port: { type: 'string', description: 'only connections with this port at either end' },
      addr: { type: 'string', description: 'only connections with this IP address at either end' },
    },
  },
  purge: {
    summary: 'remove the pinned maps and links once no accelerated connection uses them (the daemon must be stopped), and what killed bench runs left',
    flags: {
      force: { type: 'boolean', description: 'remove them even if accelerated connections remain after the wait (see the README for the cost)' },
      'wait-seconds': { type: 'string', description: 'how long to wait for accelerated connections to close (default 10)' },
    },
  },
  bench: {
    summary: 'measure plain TCP vs accelerated (adaptive off and on) vs a Unix socket on this machine (RTT, throughput, connection rate, a connection per request); needs root',
    flags: {
      quick: { type: 'boolean', description: 'a first look in a few minutes, enough for every goal (default: thorough, longer)' },
      json: { type: 'boolean', description: 'print the results as JSON instead of the table' },
      out: { type: 'string', description: 'also write the JSON results to this file' },
      'out-dir': { type: 'string', description: 'directory for results.json and chart.svg (default ./bench-results/<timestamp>)' },
      sockperf: { type: 'boolean', description: 'cross-check the 64 B RTT with sockperf ping-pong (always in thorough runs)' },
      rounds: { type: 'string', description: 'rounds of interleaved plain/accelerated/adaptive runs (quick 3, thorough 5)' },
      'duration-ms': { type: 'string', description: 'measured time of every run, after its warm-up' },
      paths: { type: 'string', description: 'paths to measure: loopback, dual-stack, pod-to-pod (comma-separated; default all)' },
      kinds: { type: 'string', description: 'what to measure: rr, stream, connrate, crr, mixed (comma-separated; default all)' },
      'adaptive-warmup-ms': { type: 'string', description: 'the adaptive side\'s warm-up per case before it is measured, also ended by 200 connections (default and most 2000)' },
      'rr-sizes': { type: 'string', description: 'request/response message sizes in bytes (default 64,1024,16384,65536)' },
      'stream-sizes': { type: 'string', description: 'streaming write sizes in bytes (default 1024,16384,131072)' },
      pinning: { type: 'string', description: 'same-cpu, cross-cpu (comma-separated; default: what the profile picks)' },
      cpus: { type: 'string', description: 'two CPUs, "server,client" for cross-cpu runs; same-cpu runs use the second (default: the last two usable)' },
    },
  },
  help: {
    summary: 'show usage, or the usage of one command',
    flags: {},
    operands: ['command'],
  },
  version: {
    summary: 'print the version',
    flags: {},
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

/** Flags every command accepts besides the configuration flags. */
export const GLOBAL_FLAGS: Readonly<Record<string, FlagSpec>> = {
  help: { type: 'boolean', short: 'h', description: 'show usage' },
};

export interface ParsedCommandLine {
  readonly command: CommandName;
  readonly operands: readonly string[];
  /** The configuration flags as `--arg=value`, for loadConfig({ argv }). */
  readonly configArgv: readonly string[];
  /** Global and command flags that were given, by name (booleans are true). */
  readonly commandFlags: Readonly<Record<string, string | boolean>>;
}

const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}

/** The command called `name`, or a UsageError naming it and the valid ones. */
export function resolveCommand(name: string): CommandName {
  if (isCommandName(name)) return name;
  const near = suggest(name, COMMAND_NAMES);
  throw new UsageError(`unknown command "${name}"${near === undefined ? '' : ` (did you mean "${near}"?)`}`, {
    hint: `commands: ${COMMAND_NAMES.join(', ')}`,
  });
}

function configFlags(): Record<string, FlagSpec> {
  return Object.fromEntries(
    describeConfigSchema().map((row): [string, FlagSpec] => [row.arg, { type: 'string', description: row.doc }]),
  );
}

/** The flags `command` accepts; without a command, the ones every command accepts. */
export function flagsOf(command: CommandName | undefined): Readonly<Record<string, FlagSpec>> {
  return { ...GLOBAL_FLAGS, ...configFlags(), ...(command === undefined ? {} : COMMANDS[command].flags) };
}

function commandsAccepting(flag: string): string {
  return COMMAND_NAMES.filter((c) => Object.hasOwn(COMMANDS[c].flags, flag)).join(', ');
}

export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  // Parse leniently against every flag any command knows, so that values are
  // bound to the right flags; then check each flag against the command.
  const allFlags: Record<string, FlagSpec> = Object.assign(
    {},
    flagsOf(undefined),
    ...COMMAND_NAMES.map((c) => COMMANDS[c].flags),
  );
  const { tokens } = parseArgs({ args: [...argv], options: allFlags, strict: false, allowPositionals: true, tokens: true });
  const options = tokens.flatMap((token) => (token.kind === 'option' ? [token] : []));
  const [commandWord, ...operands] = tokens.flatMap((token) => (token.kind === 'positional' ? [token.value] : []));

  // Unknown flags first: the lenient parse takes an unknown flag's value for
  // a positional, which would otherwise be reported as an unknown command.
  const unknown = options.find((token) => !Object.hasOwn(allFlags, token.name));
  if (unknown !== undefined) {
    const valid = Object.keys(
      flagsOf(commandWord !== undefined && isCommandName(commandWord) ? commandWord : undefined),
    ).map((name) => `--${name}`);
    const near = suggest(unknown.rawName, valid);
    throw new UsageError(`unknown option ${unknown.rawName}${near === undefined ? '' : ` (did you mean ${near}?)`}`, {
      hint: `valid options: ${valid.join(', ')}`,
    });
  }

  const named = commandWord === undefined ? undefined : resolveCommand(commandWord);
  // `<command> --help` (or -h) is `help <command>`, whatever else was given:
  // asking for usage must never run the command (`run --help` would attach,
  // `bench --help` would start a benchmark), nor fail on the flags it came with.
  if (options.some((token) => token.name === 'help' && token.value === undefined)) {
    const topic = named === 'help' ? (operands[0] ?? 'help') : named;
    return { command: 'help', operands: topic === undefined ? [] : [topic], configArgv: [], commandFlags: {} };
  }
  const accepted = flagsOf(named);
  const configArgNames = new Set(describeConfigSchema().map((row) => row.arg));
  const configArgv: string[] = [];
  const commandFlags: Record<string, string | boolean> = {};
  const given = new Set<string>();
  for (const token of options) {
    const spec = accepted[token.name];
    if (spec === undefined) {
      const where = named === undefined ? 'without a command' : `by command "${named}"`;
      throw new UsageError(`option ${token.rawName} is not accepted ${where}`, {
        hint: `${token.rawName} is an option of: ${commandsAccepting(token.name)}`,
      });
    }
    if (spec.type === 'string' && token.value === undefined) {
      throw new UsageError(`option ${token.rawName} needs a value`);
    }
    if (spec.type === 'boolean' && token.value !== undefined) {
      throw new UsageError(`option ${token.rawName} does not take a value`);
    }
    // Lists are comma-separated, so a repeated flag is a mistake, not a list.
    if (given.has(token.name)) throw new UsageError(`option --${token.name} given more than once`);
    given.add(token.name);
    if (configArgNames.has(token.name)) configArgv.push(`--${token.name}=${token.value}`);
    else commandFlags[token.name] = token.value ?? true;
  }

  if (named === undefined) {
    throw new UsageError('no command given', { hint: `commands: ${COMMAND_NAMES.join(', ')}` });
  }
  const maxOperands = (COMMANDS[named] as CommandSpec).operands?.length ?? 0;
  if (operands.length > maxOperands) {
    throw new UsageError(`unexpected argument "${operands[maxOperands]}" for command "${named}"`);
  }
  return { command: named, operands, configArgv, commandFlags };
}
