// DB_NAMES: the databases of one server, backed up one after the other, each by runBackup as if it
// were the only one: its own object, log lines (with `database`) and callback. When the platform runs
// several tasks, this task takes its share of the sorted list. One database failing never stops the
// others; SIGTERM stops the current one and skips the rest. One summary line and callback end the run,
// and the exit code is the most severe of the databases' (exit-codes.ts, worstExitName).
import { sendSummaryCallback } from './callback/send.ts';
import type { Config, DatabaseSelection } from './config.ts';
import type { Scrub } from './dump.ts';
import { ENGINES } from './engines/registry.ts';
import { messageOf, PlanBError } from './errors.ts';
import { EXIT_CODES, exitNameFor, worstExitName } from './exit-codes.ts';
import type { Logger } from './log.ts';
import { runProbe } from './probe.ts';
import { errorReport, type DatabaseOutcome, type SummaryReport } from './report.ts';
import { newRunId, scrubber, type RunOptions } from './outcome.ts';
import { runBackup } from './run.ts';

// After SIGTERM the current database's failure callback has had its few seconds; the summary gets
// less, so that both fit in the platform's grace period (Cloud Run: 10 s).
const SUMMARY_AFTER_ABORT_MS = 2_000;

// The positions this task takes of the sorted list: index, index + count, index + 2 × count, …
export function taskShare<T>(sorted: readonly T[], task: { index: number; count: number }): T[] {
  return sorted.filter((_, position) => position % task.count === task.index);
}

// The databases to back up, in the order every task sees them: DB_NAMES (or what the server lists
// for `*`) without DB_EXCLUDE, unique, sorted by code unit (the same on every machine and locale).
export async function listDatabases(config: Config, selection: DatabaseSelection, options: { signal: AbortSignal; scrub: Scrub; log: Logger }): Promise<string[]> {
  let names = selection.names;
  if (names === '*') {
    const engine = ENGINES[config.db.type];
    // config.ts refuses DB_NAMES=* for an engine that cannot list its databases.
    if (!engine.discover) throw new PlanBError('internal', `${config.db.type} cannot list its databases`);
    const probe = engine.discover({ ...config.db, name: undefined });
    names = await runProbe(probe, { db: config.db, toolEnv: config.toolEnv, ...options });
    options.log.info({ found: names }, `the server lists ${names.length} database(s) this user can dump (${probe.what})`);
  }
  const excluded = new Set(selection.exclude);
  return [...new Set(names)].filter((name) => !excluded.has(name)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

// Backs up this task's share of DB_NAMES one by one and reports the run; never throws.
export async function runDatabases(config: Config, selection: DatabaseSelection, options: RunOptions): Promise<SummaryReport> {
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  const runId = newRunId(startedAt);
  const log = options.log.child({ fanOutRunId: runId });
  const scrub = scrubber(config.secrets);
  const { task } = selection;
  const outcomes: DatabaseOutcome[] = [];
  let failure: unknown;

  try {
    const all = await listDatabases(config, selection, { signal: options.signal, scrub, log });
    const share = taskShare(all, task);
    if (share.length === 0) {
      log.info({ task, total: all.length }, `nothing to do: task ${task.index} of ${task.count} has no database (${all.length} in all)`);
    } else {
      log.info({ task, total: all.length, databases: share }, `task ${task.index} of ${task.count} backs up ${share.length} of ${all.length} database(s): ${share.join(', ')}`);
    }
    for (const name of share) {
      if (options.signal.aborted) {
        const exitName = exitNameFor(options.signal.reason);
        outcomes.push({ name, status: 'skipped', exitName, runId: undefined });
        log.warn({ database: name, exitName }, `skipped ${name}: the run was stopped (${messageOf(options.signal.reason)})`);
        continue;
      }
      const db = { ...config.db, name };
      // A name the server listed gets the checks a name in DB_NAMES got before the run.
      const problems = ENGINES[config.db.type].validate(db);
      if (problems.length > 0) {
        outcomes.push({ name, status: 'failed', exitName: 'CONFIG', runId: undefined });
        log.error({ database: name, problems }, `not backing up ${JSON.stringify(name)}: ${problems.join('; ')}`);
        continue;
      }
      const report = await runBackup({ ...config, db, databases: undefined }, { ...options, log: options.log.child({ fanOutRunId: runId, database: name }) });
      outcomes.push({ name, status: report.status === 'succeeded' ? 'stored' : 'failed', exitName: report.exitName, runId: report.runId });
    }
  } catch (error) {
    failure = options.signal.aborted ? options.signal.reason : error;
  }

  // A failure to list the databases ranks with theirs (there are none then).
  const exitName = worstExitName([...(failure === undefined ? [] : [exitNameFor(failure)]), ...outcomes.map((outcome) => outcome.exitName)]);
  let summary: SummaryReport = {
    runId,
    status: failure === undefined && outcomes.every((outcome) => outcome.status === 'stored') ? 'succeeded' : 'failed',
    exitCode: EXIT_CODES[exitName].code,
    exitName,
    database: { type: config.db.type, host: config.db.host },
    task,
    databases: outcomes,
    error: errorReport(failure, scrub),
    startedAt,
    finishedAt: now(),
    platform: config.platform,
  };
  const counts = { stored: 0, failed: 0, skipped: 0 };
  for (const outcome of outcomes) counts[outcome.status] += 1;
  const line = { exitCode: summary.exitCode, exitName: summary.exitName, task, counts, databases: outcomes.map(({ name, status, exitName }) => ({ name, status, exitName })) };
  const tally = `${counts.stored} stored, ${counts.failed} failed, ${counts.skipped} skipped of ${outcomes.length}`;
  if (summary.error) log.error(line, `run failed before any database was backed up: ${summary.error.message}`);
  else if (summary.status === 'succeeded') log.info(line, `run finished: ${tally}`);
  else log.error(line, `run finished: ${tally}; exit ${summary.exitCode} (${summary.exitName})`);

  if (config.callback) {
    const signal = options.signal.aborted ? AbortSignal.timeout(SUMMARY_AFTER_ABORT_MS) : options.signal;
    try {
      await sendSummaryCallback(config.callback, summary, { signal, log, secrets: config.secrets });
    } catch (error) {
      const lost = messageOf(error);
      const worst = worstExitName([summary.exitName, 'CALLBACK_FAILED']);
      summary = { ...summary, exitName: worst, exitCode: EXIT_CODES[worst].code };
      log.error({ exitCode: summary.exitCode, exitName: summary.exitName }, `the summary callback was not delivered: ${lost}`);
    }
  }
  return summary;
}
