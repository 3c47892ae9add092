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
import { BenchIntegrityError } from './loadgen';
import { runBench } from './runner';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require('../../../package.json').version;

/** Exit status when the accelerated side was not accelerated or bytes were wrong. */
export const INTEGRITY_FAILURE_EXIT = 1;
const INTERRUPTED_EXIT = 130;

/** The scratch daemon logs warnings only, unless --log-level says otherwise. */
function logLevel(configArgv: readonly string[]): LogLevel {
  const given = configArgv.find((a) => a.startsWith('--log-level='))?.slice('--log-level='.length);
  return LOG_LEVELS.find((l) => l === given) ?? 'warn';
}

export async function runBenchCommand(cmd: ParsedCommandLine): Promise<number> {
  const opts = parseBenchOptions(cmd.commandFlags);
  const log = createLogger({ level: logLevel(cmd.configArgv), destination: process.stderr });
  const group = new ProcessGroup();
  const controller = new AbortController();
  // Ends our children (by pid) so the run in progress fails fast; runBench
  // then removes everything it created before we exit.
  const onSignal = () => {
    controller.abort();
    void group.killAll();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let results;
  try {
    results = await runBench(opts, cmd.configArgv, {
      progress: (total) => new Progress(total),
      log,
      signal: controller.signal,
      group,
      version: VERSION,
    });
  } catch (err) {
    if (controller.signal.aborted) {
      process.stderr.write('sockaccel bench: interrupted; the cgroup, namespaces, pins and processes it made were removed\n');
      return INTERRUPTED_EXIT;
    }
    if (err instanceof BenchIntegrityError) {
      process.stderr.write(
        `sockaccel bench: INTEGRITY FAILURE: ${err.message}\n` +
          'No numbers are reported: a run that silently fell back to plain TCP (or lost bytes) would make them lie.\n',
      );
      return INTEGRITY_FAILURE_EXIT;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  fs.mkdirSync(opts.outDir, { recursive: true });
  const files = { json: path.join(opts.outDir, 'results.json'), chart: path.join(opts.outDir, 'chart.svg') };
  const json = `${JSON.stringify(results, null, 2)}\n`;
  fs.writeFileSync(files.json, json);
  fs.writeFileSync(files.chart, renderChart(results));
  if (opts.out !== undefined) fs.writeFileSync(opts.out, json);
  process.stdout.write(opts.json ? json : formatReport(results, files));
  return 0;
}
