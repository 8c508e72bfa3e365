// The only file that touches the process: environment → config → run → exit code; signal handlers;
// the last-resort handlers for bugs. Everything else is in run.ts and below.
// First: refuse an older Node.js before any other module runs.
import './require-node.ts';
import { loadConfig } from './config.ts';
import { ConfigError, InterruptedError } from './errors.ts';
import { EXIT_CODES, exitCodeFor } from './exit-codes.ts';
import { runDatabases } from './fan-out.ts';
import { createLogger, type Logger } from './log.ts';
import { runRestore } from './restore.ts';
import { runBackup } from './run.ts';
import { runVerify } from './verify.ts';

// After SIGTERM the platform kills us anyway (Kubernetes: 30 s, Cloud Run: 10 s); stop cleanly before.
const FORCED_EXIT_AFTER_SIGNAL_MS = 8_000;

function installSignalHandlers(controller: AbortController, log: () => Logger): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (controller.signal.aborted) return;
      log().warn({ signal }, `received ${signal}: stopping the dump and aborting the upload`);
      controller.abort(new InterruptedError(signal));
      setTimeout(() => {
        log().error({ signal }, 'cleanup did not finish in time; exiting now');
        process.exit(EXIT_CODES[signal].code);
      }, FORCED_EXIT_AFTER_SIGNAL_MS).unref();
    });
  }
}

async function main(): Promise<number> {
  const controller = new AbortController();
  let log = createLogger({ level: 'info', base: {} });
  installSignalHandlers(controller, () => log);
  // Node prints warnings (deprecations inside SDKs) on stderr; logs are JSON lines on stdout only.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => log.warn({ warning: { name: warning.name, code: (warning as NodeJS.ErrnoException).code } }, warning.message));
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'internal error (a bug in Plan B)');
    process.exit(EXIT_CODES.INTERNAL.code);
  });

  // main() always ends with process.exit; an event loop that drains first means a promise was left
  // hanging. Exiting 0 then would report a backup that does not exist.
  process.once('beforeExit', () => {
    log.fatal('the run stopped making progress before it finished (a bug in Plan B)');
    process.exit(EXIT_CODES.INTERNAL.code);
  });

  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const warning of error.warnings) log.warn(warning);
    log.fatal({ problems: error.problems, exitCode: EXIT_CODES.CONFIG.code }, error.message);
    return EXIT_CODES.CONFIG.code;
  }
  log = createLogger({ level: config.logLevel, base: platformFields(config.platform) });
  for (const warning of config.warnings) log.warn(warning);
  const options = { log, signal: controller.signal };
  const run = { backup: runBackup, restore: runRestore, verify: runVerify }[config.job.mode];
  const report = config.databases ? await runDatabases(config, config.databases, options) : await run(config, options);
  if (log.isLevelEnabled('debug')) log.debug({ memory: memoryAtExit() }, 'memory at exit');
  return report.exitCode;
}

// What the run left in memory. With `node --expose-gc` a full collection runs first, so the heap and
// buffer figures are what is still referenced, not garbage: the test of "nothing is kept per byte".
function memoryAtExit(): Record<string, number | boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const usage = process.memoryUsage();
  return {
    collected: gc !== undefined,
    heapUsedBytes: usage.heapUsed,
    arrayBuffersBytes: usage.arrayBuffers,
    externalBytes: usage.external,
    rssBytes: usage.rss,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

// The scheduler's identifiers, flattened for every log line.
function platformFields(platform: ReturnType<typeof loadConfig>['platform']): Record<string, string | number> {
  const fields: Record<string, string | number | undefined> = {
    cloudRunJob: platform.cloudRun?.job,
    cloudRunExecution: platform.cloudRun?.execution,
    cloudRunTaskIndex: platform.cloudRun?.taskIndex,
    cloudRunTaskAttempt: platform.cloudRun?.taskAttempt,
    k8sNamespace: platform.kubernetes?.namespace,
    k8sPod: platform.kubernetes?.pod,
    k8sJob: platform.kubernetes?.job,
  };
  return Object.fromEntries(Object.entries(fields).filter((entry): entry is [string, string | number] => entry[1] !== undefined));
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    createLogger({ level: 'info', base: {} }).fatal({ err: error }, 'internal error (a bug in Plan B)');
    process.exit(exitCodeFor(error));
  },
);
