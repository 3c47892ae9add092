/**
 * `sockaccel bench`: plain TCP vs sockaccel vs a Unix domain socket, on this
 * machine, in one run. Progress goes to stderr; the table (or, with --json,
 * the JSON) to stdout; results.json and chart.svg to --out-dir.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ParsedCommandLine } from '../cli/cli-args';
import { createLogger, LOG_LEVELS, type LogLevel } from '../common/log';
import { renderChart } from './chart-svg';
import { parseBenchOptions } from './options';
import { ProcessGroup } from './processes';
import { Progress } from './progress';
import { formatReport } from './report-table';
import { runBench } from './runner';
import { outputClosed, Shutdown } from './shutdown';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version;

/** The scratch daemon logs warnings only, unless --log-level says otherwise. */
function logLevel(configArgv: readonly string[]): LogLevel {
  const given = configArgv.find((a) => a.startsWith('--log-level='))?.slice('--log-level='.length);
  return LOG_LEVELS.find((l) => l === given) ?? 'warn';
}

/** Writes `text` and waits for it: resolves with the write's error (a closed pipe) instead of leaving it to an 'error' event. */
function writeStdout(text: string): Promise<Error | null | undefined> {
  return new Promise((resolve) => process.stdout.write(text, resolve));
}

export async function runBenchCommand(cmd: ParsedCommandLine): Promise<number> {
  const opts = parseBenchOptions(cmd.commandFlags);
  const log = createLogger({ level: logLevel(cmd.configArgv), destination: process.stderr });
  const group = new ProcessGroup();
  const shutdown = new Shutdown(group);
  const stopListening = shutdown.listen();
  let results;
  try {
    results = await runBench(opts, cmd.configArgv, {
      progress: (total) => new Progress(total),
      log,
      signal: shutdown.signal,
      group,
      version: VERSION,
    });
  } catch (err) {
    // A BenchIntegrityError (or any other) goes on to main, which prints it and exits with its code.
    const stopped = shutdown.stopped;
    if (stopped === undefined) throw err;
    process.stderr.write(`sockaccel bench: ${stopped.reason}; the cgroup, namespaces, pins and processes it made were removed\n`);
    return stopped.exitCode;
  } finally {
    stopListening();
  }

  fs.mkdirSync(opts.outDir, { recursive: true });
  const files = { json: path.join(opts.outDir, 'results.json'), chart: path.join(opts.outDir, 'chart.svg') };
  const json = `${JSON.stringify(results, null, 2)}\n`;
  fs.writeFileSync(files.json, json);
  fs.writeFileSync(files.chart, renderChart(results));
  if (opts.out !== undefined) fs.writeFileSync(opts.out, json);
  const failed = await writeStdout(opts.json ? json : formatReport(results, files));
  if (failed) {
    shutdown.stop(outputClosed('stdout', failed));
    process.stderr.write(`sockaccel bench: ${shutdown.stopped!.reason} before the results were printed; they are in ${files.json}\n`);
  }
  return shutdown.stopped?.exitCode ?? 0;
}
