#!/usr/bin/env node
/**
 * The `sockaccel` command. Errors end here: one human paragraph on stderr
 * and the error class's exit code.
 */
import { parseCommandLine, CommandName, ParsedCommandLine } from './cli-args';
import { formatUsage } from './usage';
import { loadConfig, parsePortOverrides } from '../config/config';
import { exitCodeOf, formatError } from '../common/errors';
import { createLogger } from '../common/log';
import { startDaemon, STOP_DEADLINE_MS } from '../daemon/daemon';
import { formatStatus, readStatus } from './status';
import { runPurge } from './purge';
import { runDoctorCommand } from '../doctor';
import { runConnsCommand } from '../conns';
import { runBenchCommand } from '../bench';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version;

type Handler = (cmd: ParsedCommandLine) => Promise<number>;

const HANDLERS: Record<CommandName, Handler> = {
  run: runDaemon,
  status: async (cmd) => {
    const config = loadConfig({ argv: cmd.configArgv });
    const report = readStatus(config.pinRoot, { overrides: parsePortOverrides(config.adaptiveOverrides) });
    process.stdout.write(cmd.commandFlags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatStatus(report)}\n`);
    return 0;
  },
  doctor: runDoctorCommand,
  conns: runConnsCommand,
  purge: runPurge,
  bench: runBenchCommand,
  help: async (cmd) => {
    process.stdout.write(`${formatUsage(cmd.operands[0])}\n`);
    return 0;
  },
  version: async () => {
    process.stdout.write(`sockaccel ${VERSION}\n`);
    return 0;
  },
};

async function runDaemon(cmd: ParsedCommandLine): Promise<number> {
  const config = loadConfig({ argv: cmd.configArgv });
  const log = createLogger({ level: config.logLevel });
  // Listening before the start, which awaits (the first local-endpoints
  // sync): without a listener Node leaves SIGTERM to its default action, and
  // a stop right after "ready" would kill the process instead of stopping it.
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  const daemon = await startDaemon(config, log);
  const signal = await signalled;
  log.info({ signal }, 'signal received');
  const clean = await daemon.stop(STOP_DEADLINE_MS);
  return clean ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  try {
    const cmd = parseCommandLine(argv);
    return await HANDLERS[cmd.command](cmd);
  } catch (err) {
    process.stderr.write(`sockaccel: ${formatError(err)}\n`);
    return exitCodeOf(err);
  }
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
