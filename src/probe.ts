// Runs an engine's probe (a short read-only query: the databases DB_NAMES=* stands for, a database's
// size) with the dump's own credential mechanism: 0600 files in a private directory that is removed
// on every path, the tool's env, never argv. Output and time are bounded.
import { execa } from 'execa';
import type { Config } from './config.ts';
import { createSecretsDir, removeSecretsDir, writeCredentialFiles, type Scrub } from './dump.ts';
import { ENGINES } from './engines/registry.ts';
import type { DbConfig, Probe } from './engines/types.ts';
import { DumpError } from './errors.ts';
import type { Logger } from './log.ts';
import { formatBytes } from './units.ts';
import { which } from './which.ts';

// A query against the catalogue answers in milliseconds; past this the server is not answering.
export const PROBE_TIMEOUT_MS = 30_000;
// The longest answer read: a name list of tens of thousands of databases fits easily.
const MAX_PROBE_OUTPUT_BYTES = 4 * 1024 * 1024;
// Lines of stderr kept for the error message.
const STDERR_TAIL_LINES = 10;

export type ProbeOptions = {
  db: DbConfig;
  toolEnv: Readonly<Record<string, string>>;
  signal: AbortSignal;
  scrub: Scrub;
  log: Logger;
  timeoutMs?: number;
};

// Runs `probe` and returns its parsed answer; rejects with a DumpError classified by the engine
// (unreachable, auth, failed, missing-tool) whose message is scrubbed of secrets.
export async function runProbe<T>(probe: Probe<T>, options: ProbeOptions): Promise<T> {
  const engine = ENGINES[options.db.type];
  const tool = which(probe.tools, options.toolEnv.PATH ?? '');
  if (!tool) throw new DumpError(`none of ${probe.tools.join(', ')} is on PATH; cannot ask ${options.db.type} for ${probe.what}`, { kind: 'missing-tool' });
  const secretsDir = await createSecretsDir(options.log);
  try {
    const command = probe.command({ secretsDir, tool: tool.file });
    await writeCredentialFiles(command);
    const result = await execa(command.file, command.args, {
      env: { ...options.toolEnv, ...command.env },
      extendEnv: false,
      stdin: 'ignore',
      reject: false,
      timeout: options.timeoutMs ?? PROBE_TIMEOUT_MS,
      maxBuffer: MAX_PROBE_OUTPUT_BYTES,
      cancelSignal: options.signal,
      stripFinalNewline: false,
    });
    options.signal.throwIfAborted();
    const stderrTail = options.scrub(`${result.stderr}`.trim().split('\n').slice(-STDERR_TAIL_LINES).join('\n'));
    if (result.failed) {
      const how = result.timedOut
        ? `did not answer within ${(options.timeoutMs ?? PROBE_TIMEOUT_MS) / 1000} s`
        : result.isMaxBuffer
          ? `answered more than ${formatBytes(MAX_PROBE_OUTPUT_BYTES)}`
          : result.exitCode === undefined
            ? `could not run: ${options.scrub(result.shortMessage ?? "unknown error")}`
            : `exited with code ${result.exitCode}`;
      throw new DumpError(`${tool.name} (${probe.what}) ${how}${stderrTail ? `: ${stderrTail}` : ''}`, {
        kind: result.timedOut ? 'unreachable' : engine.classify(stderrTail),
        exitCode: result.exitCode,
        stderrTail,
      });
    }
    try {
      return probe.parse(`${result.stdout}`);
    } catch (error) {
      throw new DumpError(`${tool.name} (${probe.what}) gave an answer that cannot be read: ${options.scrub((error as Error).message)}`, { kind: 'failed', stderrTail }, { cause: error });
    }
  } finally {
    await removeSecretsDir(secretsDir, options.log);
  }
}

// The size to plan the upload for: BACKUP_EXPECTED_SIZE when set, else the database's own figure
// from its statistics. A probe that fails is a warning, never the backup's failure: the target
// then plans for an unknown size.
export async function plannedSize(config: Config, options: Omit<ProbeOptions, 'db' | 'toolEnv'>): Promise<number | undefined> {
  if (config.backup.expectedSize !== undefined) {
    options.log.info({ sizeHint: config.backup.expectedSize, sizeSource: 'BACKUP_EXPECTED_SIZE' }, `upload planned for ${formatBytes(config.backup.expectedSize)} (BACKUP_EXPECTED_SIZE)`);
    return config.backup.expectedSize;
  }
  const probe = ENGINES[config.db.type].size(config.db);
  try {
    const bytes = await runProbe(probe, { ...options, db: config.db, toolEnv: config.toolEnv });
    options.log.info({ sizeHint: bytes, sizeSource: probe.what }, `upload planned for ${formatBytes(bytes)}, the database's own size (${probe.what})`);
    return bytes;
  } catch (error) {
    options.signal.throwIfAborted();
    options.log.warn(
      { sizeSource: probe.what, reason: options.scrub((error as Error).message) },
      `could not read the database's size (${probe.what}); the upload is planned for an unknown size: ${options.scrub((error as Error).message)}`,
    );
    return undefined;
  }
}
