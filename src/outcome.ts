// The frame around every run (a backup, a restore, a verification): run id, deadline and signal at the
// start; at the end the report, its log line and the signed callback (whose failure alone gives
// CALLBACK_FAILED).
import { randomBytes } from 'node:crypto';
import { sendCallback } from './callback/send.ts';
import type { Config } from './config.ts';
import type { Scrub } from './dump.ts';
import { CallbackError, DeadlineError, messageOf, PlanBError } from './errors.ts';
import type { Logger } from './log.ts';
import { scrubSecrets } from './redact.ts';
import { reportFor, type ObjectReport, type Operation, type RunReport, type VerificationReport } from './report.ts';

// After SIGTERM or the deadline, the failure callback gets this long: inside Cloud Run's 10 s grace
// and before main.ts's forced exit.
const CALLBACK_AFTER_ABORT_MS = 5_000;

export type RunOptions = {
  log: Logger;
  // Aborted by main.ts on SIGTERM/SIGINT, with an InterruptedError as the reason.
  signal: AbortSignal;
  now?: () => Date;
};

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
  // Marks the end of streaming, when more follows (a verification after the backup).
  streamed(): void;
  timings(): { prepareMs: number; streamMs: number };
  clearDeadline(): void;
};

// Starts the frame of one run; `aborts` are further reasons to stop it (a backup's stall watch).
export function startRun(config: Config, operation: Operation, options: RunOptions, aborts: readonly AbortSignal[] = []): RunContext {
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  const runId = newRunId(startedAt);
  const deadline = startDeadline(config.backup.timeoutMs);
  const start = performance.now();
  let preparedAt: number | undefined;
  let streamedAt: number | undefined;
  return {
    operation,
    runId,
    log: options.log.child({ runId, operation }),
    scrub: scrubber(config.secrets),
    signal: AbortSignal.any([options.signal, deadline.signal, ...aborts]),
    startedAt,
    now,
    prepared: () => {
      preparedAt ??= performance.now();
    },
    streamed: () => {
      streamedAt ??= performance.now();
    },
    timings: () => {
      const end = streamedAt ?? performance.now();
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

// `20261122T043300Z-3f9a1c2e`: sortable by time, unique per run and per retry attempt.
export function newRunId(at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

export function startDeadline(timeoutMs: number | undefined): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  if (timeoutMs === undefined) return { signal: controller.signal, clear: () => undefined };
  const timer = setTimeout(() => controller.abort(new DeadlineError(timeoutMs)), timeoutMs);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

// Removes the run's secrets from text that leaves the process (whole occurrences only: redact.ts).
export function scrubber(secrets: readonly string[]): Scrub {
  return (text) => scrubSecrets(text, secrets);
}
