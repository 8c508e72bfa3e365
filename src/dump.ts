// Starts the dump tool as a child process: credential files written 0600 in a private temp dir and
// removed on every exit path, a minimal environment, stderr logged (scrubbed), and an `exited`
// promise that rejects with a DumpError naming the failure and carrying the stderr tail.
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import { DumpError } from './errors.ts';
import type { CommandContext, DbConfig, DumpCommand, DumpEngine, ToolAnswer } from './engines/types.ts';
import type { Logger } from './log.ts';
import { which } from './which.ts';

// Time between SIGTERM and SIGKILL when the dump must stop (abort, failure elsewhere).
const KILL_GRACE_MS = 3_000;
// Lines of the tool's stderr kept for the error message.
const STDERR_TAIL_LINES = 15;
// The version probe must not hold up a backup.
const VERSION_TIMEOUT_MS = 5_000;
// A preflight question is answered in well under a second; quick_check on a large SQLite file reads
// it whole, so allow minutes before calling the database unreachable.
const PREFLIGHT_TIMEOUT_MS = 10 * 60_000;
// Output of a preflight kept for judging it: its answers are a few lines.
const PREFLIGHT_OUTPUT_BYTES = 64 * 1024;

export type RunningDump = {
  // The tool's output; undefined when it writes straight into `options.stdout`.
  stdout: Readable | undefined;
  // Resolves when the tool exited 0; rejects with a DumpError otherwise (after stop() or an abort,
  // with a plain "was stopped" one: the run then reports what made it stop, not this).
  exited: Promise<void>;
  // Stops the tool because something else failed; its exit is then not reported as a failure.
  stop(): void;
};

// Removes secret values from text that leaves the process.
export type Scrub = (text: string) => string;

// Creates the private directory for credential files; the caller removes it with removeSecretsDir.
export async function createSecretsDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'planb-'));
}

// Writes the command's credential files (mode 0600) into their directory.
export async function writeCredentialFiles(command: DumpCommand): Promise<void> {
  for (const file of command.files) await writeFile(file.path, file.content, { mode: 0o600, flag: 'wx' });
}

// Removes the credential directory; a failure is logged, never thrown over the run's own outcome.
export async function removeSecretsDir(dir: string, log: Logger): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch((error: unknown) => log.error({ err: error, dir }, 'could not remove the credentials directory'));
}

// Asks the tool for its version (`pg_dump (PostgreSQL) 16.4`); 'unknown' if it will not say.
export async function toolVersion(file: string, env: Readonly<Record<string, string>>): Promise<string> {
  const result = await execa(file, ['--version'], { env, extendEnv: false, reject: false, timeout: VERSION_TIMEOUT_MS, stdin: 'ignore' });
  const line = `${result.stdout}`.split('\n').find((l) => l.trim() !== '');
  return result.exitCode === 0 && line ? line.trim() : 'unknown';
}

// Starts the dump; `baseEnv` is the minimal environment (PATH, HOME, locale) the tool inherits;
// `stdout`, a pipe to a compressor child, becomes the tool's own stdout (the bytes bypass this process).
export function startDump(
  command: DumpCommand,
  engine: DumpEngine,
  options: { baseEnv: Readonly<Record<string, string>>; signal: AbortSignal; log: Logger; scrub: Scrub; stdout?: Writable | undefined },
): RunningDump {
  const stopped = new AbortController();
  const child = execa(command.file, command.args, {
    env: { ...options.baseEnv, ...command.env },
    extendEnv: false,
    stdin: 'ignore',
    stdout: options.stdout ?? 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cancelSignal: AbortSignal.any([options.signal, stopped.signal]),
    forceKillAfterDelay: KILL_GRACE_MS,
    cleanup: true,
  });

  const tail: string[] = [];
  const lines = createInterface({ input: child.stderr });
  lines.on('line', (raw) => {
    const line = options.scrub(raw);
    tail.push(line);
    if (tail.length > STDERR_TAIL_LINES) tail.shift();
    options.log.info({ tool: command.file, stderr: line }, 'dump tool stderr');
  });
  const stderrClosed = new Promise<void>((resolve) => lines.once('close', resolve));

  const exited = (async () => {
    const result = await child;
    await stderrClosed;
    if (stopped.signal.aborted || options.signal.aborted) {
      if (result.exitCode === 0) return;
      throw new DumpError(`${command.file} was stopped`, { kind: 'failed', exitCode: result.exitCode, signal: result.signal });
    }
    const stderrTail = tail.join('\n');
    if (result.failed && result.exitCode === undefined && result.signal === undefined) {
      const missing = (result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      throw new DumpError(`${command.file} could not start: ${options.scrub(result.shortMessage ?? 'unknown error')}`, { kind: missing ? 'missing-tool' : 'failed', stderrTail });
    }
    if (result.exitCode === 0) return;
    const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
    throw new DumpError(`${command.file} ${how}${stderrTail ? `: ${stderrTail}` : ''}`, {
      kind: result.signal ? 'failed' : engine.classify(stderrTail),
      exitCode: result.exitCode,
      signal: result.signal,
      stderrTail,
    });
  })();

  return {
    stdout: child.stdout ?? undefined,
    exited,
    stop: () => stopped.abort(),
  };
}

// Runs the engine's preflight, if it has one, and throws a DumpError for the problem it finds. Its
// commands get the same minimal environment and 0600 credential files as the dump.
export async function runPreflight(
  engine: DumpEngine,
  db: DbConfig,
  context: CommandContext & { baseEnv: Readonly<Record<string, string>>; signal: AbortSignal; log: Logger; scrub: Scrub },
): Promise<void> {
  if (!engine.preflight) return;
  context.log.info('preflight started');
  const ask = async (command: DumpCommand): Promise<ToolAnswer> => {
    await writeCredentialFiles(command);
    try {
      const result = await execa(command.file, command.args, {
        env: { ...context.baseEnv, ...command.env },
        extendEnv: false,
        stdin: 'ignore',
        reject: false,
        timeout: PREFLIGHT_TIMEOUT_MS,
        cancelSignal: context.signal,
        maxBuffer: PREFLIGHT_OUTPUT_BYTES,
      });
      const exitCode = result.exitCode ?? (result.failed ? undefined : 0);
      return { exitCode, stdout: `${result.stdout}`, stderr: context.scrub(`${result.stderr}`) };
    } finally {
      await Promise.all(command.files.map((file) => rm(file.path, { force: true })));
    }
  };
  const problem = await engine.preflight(db, {
    ...context,
    ask,
    readHead: async (path, bytes) => {
      try {
        const handle = await open(path, 'r');
        try {
          const { buffer, bytesRead } = await handle.read(Buffer.alloc(bytes), 0, bytes, 0);
          return buffer.subarray(0, bytesRead);
        } finally {
          await handle.close();
        }
      } catch (error) {
        return (error as NodeJS.ErrnoException).code ?? 'EIO';
      }
    },
    which: (names) => which(names, context.baseEnv.PATH ?? '')?.file,
    skipped: (reason) => context.log.warn({ reason }, `preflight skipped: ${reason}`),
  });
  context.signal.throwIfAborted();
  if (problem) throw new DumpError(context.scrub(`preflight: ${problem.message}`), { kind: problem.kind });
  context.log.info('preflight passed');
}
