// The frame around a restore or a verification: run id, deadline and signal at the start; at the end
// the report, its log line and the signed callback (whose failure alone gives CALLBACK_FAILED).
import { sendCallback } from './callback/send.ts';
import type { Config } from './config.ts';
import type { Scrub } from './dump.ts';
import { CallbackError, PlanBError } from './errors.ts';
import type { Logger } from './log.ts';
import { reportFor, type ObjectReport, type Operation, type RunReport, type VerificationReport } from './report.ts';
import { messageOf, newRunId, scrubber, startDeadline, type RunOptions } from './run.ts';

// After SIGTERM or the deadline, the failure callback gets this long (as in run.ts).
const CALLBACK_AFTER_ABORT_MS = 5_000;

// What a running restore or verification carries from start to finish.
export type RunContext = {
  operation: Operation;
  runId: string;
  log: Logger;
  scrub: Scrub;
  // The run's signal: SIGTERM/SIGINT or BACKUP_TIMEOUT.
  signal: AbortSignal;
  startedAt: Date;
  now: () => Date;
  // Marks the end of preparation (config checks, target probe): the rest is streaming.
  prepared(): void;
  timings(): { prepareMs: number; streamMs: number };
  clearDeadline(): void;
};

// Starts the frame of one run.
export function startRun(config: Config, operation: Operation, options: RunOptions): RunContext {
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  const runId = newRunId(startedAt);
  const deadline = startDeadline(config.backup.timeoutMs);
  const start = performance.now();
  let preparedAt: number | undefined;
  return {
    operation,
    runId,
    log: options.log.child({ runId, operation }),
    scrub: scrubber(config.secrets),
    signal: AbortSignal.any([options.signal, deadline.signal]),
    startedAt,
    now,
    prepared: () => {
      preparedAt ??= performance.now();
    },
    timings: () => {
      const end = performance.now();
      const prepare = (preparedAt ?? end) - start;
      return { prepareMs: Math.round(prepare), streamMs: Math.round(end - (preparedAt ?? end)) };
    },
    clearDeadline: () => deadline.clear(),
  };
}

export type Outcome = {
  failure: unknown;
  object: ObjectReport | undefined;
  rawBytes: number;
  tool: { name: string; version: string };
  verification?: VerificationReport | undefined;
  successMessage: string;
};

// Builds the report, logs its line and delivers the callback; returns the report with the exit code.
export async function finishRun(config: Config, run: RunContext, outcome: Outcome): Promise<RunReport> {
  const { log } = run;
  const timings = run.timings();
  const build = (failure: unknown): RunReport =>
    reportFor(config, { ...outcome, operation: run.operation, runId: run.runId, startedAt: run.startedAt, finishedAt: run.now(), durations: timings, failure, scrub: run.scrub });
  let report = build(outcome.failure);
  if (outcome.failure === undefined) {
    log.info({ object: report.object, rawBytes: report.rawBytes, durations: report.durations, verification: report.verification }, outcome.successMessage);
  } else {
    log.error(
      { exitCode: report.exitCode, exitName: report.exitName, stage: report.error?.stage, verification: report.verification, err: outcome.failure instanceof PlanBError ? undefined : outcome.failure },
      `${run.operation} failed: ${report.error?.message}`,
    );
  }
  if (config.callback) {
    const callbackSignal = run.signal.aborted ? AbortSignal.timeout(CALLBACK_AFTER_ABORT_MS) : run.signal;
    try {
      await sendCallback(config.callback, report, { signal: callbackSignal, log, secrets: config.secrets });
    } catch (error) {
      if (report.status === 'failed') {
        log.warn({ err: error }, `the failure callback could not be delivered; the ${run.operation} failure decides the exit code`);
      } else {
        report = build(error instanceof CallbackError ? error : new CallbackError(messageOf(error), { attempts: 0 }, { cause: error }));
        log.error({ exitCode: report.exitCode, exitName: report.exitName }, `${outcome.successMessage}, but the callback failed: ${report.error?.message}`);
      }
    }
  }
  run.clearDeadline();
  return report;
}
