// Starts the dump tool as a child process: credential files written 0600 in a private temp dir and
// removed on every exit path the process lives through (a SIGKILLed run's directory is removed by the
// next run, see leftovers.ts), a minimal environment, stderr logged (scrubbed, each line capped, the
// rate limited), and an `exited` promise that rejects with a DumpError naming the failure and
// carrying the stderr tail.
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import { ConfigError, DumpError, StoppedError } from './errors.ts';
import type { CommandContext, DbConfig, DumpCommand, DumpEngine, ToolAnswer } from './engines/types.ts';
import { OWNER_TAG_PATTERN, ownerIsGone, ownerTag } from './leftovers.ts';
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
// A stderr line is kept and logged up to this many bytes; the rest is dropped and the cut marked.
export const MAX_STDERR_LINE_BYTES = 8 * 1024;
// At most this many stderr lines are logged per second; the others are counted in one summary line.
export const MAX_STDERR_LINES_PER_SECOND = 20;
// `planb-secrets-<owner>-XXXXXX` in TMPDIR (mkdtemp adds the six characters).
const SECRETS_DIR_PREFIX = 'planb-secrets-';
const SECRETS_DIR = new RegExp(`^${SECRETS_DIR_PREFIX}(${OWNER_TAG_PATTERN})-[A-Za-z0-9]{6}$`);

export type RunningDump = {
  // The tool's output; undefined when it writes straight into `options.stdout`.
  stdout: Readable | undefined;
  // The tool's input when started with `stdin: 'pipe'` (a restore tool reading the dump).
  stdin: Writable | undefined;
  // Resolves when the tool exited 0; rejects with a DumpError otherwise (after stop() or an abort,
  // with a StoppedError: the run then reports what made it stop, not this).
  exited: Promise<void>;
  // Stops the tool because something else failed; its exit is then not reported as a failure.
  stop(): void;
};

// Removes secret values from text that leaves the process.
export type Scrub = (text: string) => string;

// Creates the private directory for credential files; the caller removes it with removeSecretsDir.
// Removes first the directories of earlier runs on this host that were killed before they could.
// A TMPDIR that is missing, read-only or full is a configuration problem of the container.
export async function createSecretsDir(log: Logger): Promise<string> {
  const parent = tmpdir();
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const owner = SECRETS_DIR.exec(name)?.[1];
    if (owner === undefined || !ownerIsGone(owner)) continue;
    await rm(join(parent, name), { recursive: true, force: true }).then(
      () => log.info({ dir: join(parent, name) }, 'removed the credentials directory of an earlier run that was killed'),
      (error: unknown) => log.warn({ err: error, dir: join(parent, name) }, 'could not remove the credentials directory of an earlier run'),
    );
  }
  try {
    return await mkdtemp(join(parent, `${SECRETS_DIR_PREFIX}${ownerTag()}-`));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    const why = code === 'ENOSPC' || code === 'EDQUOT' ? 'is full' : code === 'ENOENT' ? 'does not exist' : 'is not a writable folder';
    throw new ConfigError([`TMPDIR: ${parent} ${why} (${code}); the job needs a few KiB of writable temporary space there`]);
  }
}

// Writes the command's credential files (mode 0600) into their directory; a full TMPDIR is named.
export async function writeCredentialFiles(command: DumpCommand): Promise<void> {
  for (const file of command.files) {
    await writeFile(file.path, file.content, { mode: 0o600, flag: 'wx' }).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new ConfigError([`TMPDIR: ${tmpdir()} is full (${code}); the job needs a few KiB of writable temporary space there`]);
      throw error;
    });
  }
}

// Removes the credential directory; a failure is logged, never thrown over the run's own outcome.
export async function removeSecretsDir(dir: string, log: Logger): Promise<void> {
  await rm(dir, { recursive: true, force: true }).catch((error: unknown) => log.error({ err: error, dir }, 'could not remove the credentials directory'));
}

// Asks the tool for its version (`pg_dump (PostgreSQL) 16.4`); 'unknown' if it will not say.
export async function toolVersion(file: string, env: Readonly<Record<string, string>>, args: readonly string[] = ['--version']): Promise<string> {
  const result = await execa(file, args, { env, extendEnv: false, reject: false, timeout: VERSION_TIMEOUT_MS, stdin: 'ignore' });
  const line = `${result.stdout}`.split('\n').find((l) => l.trim() !== '');
  return result.exitCode === 0 && line ? line.trim() : 'unknown';
}

// Starts the dump; `baseEnv` is the minimal environment (PATH, HOME, locale) the tool inherits;
// `stdout`, a pipe to a compressor child, becomes the tool's own stdout (the bytes bypass this process).
export function startDump(
  command: DumpCommand,
  engine: DumpEngine,
  options: {
    baseEnv: Readonly<Record<string, string>>;
    signal: AbortSignal;
    log: Logger;
    scrub: Scrub;
    stdout?: Writable | 'ignore' | undefined;
    stdin?: 'pipe' | undefined;
    // A restore tool's failures are the restore's (stage `restore`), not the dump's.
    stage?: 'dump' | 'restore';
    // A tool that goes on after an error and still exits 0: its stderr lines matching `match` are
    // failures, unless they also match `benign`.
    errorLines?: { match: RegExp; benign: RegExp } | undefined;
  },
): RunningDump {
  const stopped = new AbortController();
  const stage = options.stage ?? 'dump';
  const child = execa(command.file, command.args, {
    env: { ...options.baseEnv, ...command.env },
    extendEnv: false,
    stdin: options.stdin ?? 'ignore',
    stdout: options.stdout ?? 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cancelSignal: AbortSignal.any([options.signal, stopped.signal]),
    forceKillAfterDelay: KILL_GRACE_MS,
    cleanup: true,
  });

  // Kept unscrubbed until joined: a secret with a line break is then matched whole.
  const tail: string[] = [];
  const errors: string[] = [];
  const stderrClosed = readLines(child.stderr, (raw, cutBytes) => {
    const mark = cutBytes > 0 ? ` […${cutBytes} more bytes cut]` : '';
    tail.push(raw + mark);
    if (tail.length > STDERR_TAIL_LINES) tail.shift();
    const line = options.scrub(raw) + mark;
    const rule = options.errorLines;
    if (rule && rule.match.test(line) && !rule.benign.test(line) && errors.length < STDERR_TAIL_LINES) errors.push(line);
    return line;
  }, {
    line: (line) => options.log.info({ tool: command.file, stderr: line }, `${stage} tool stderr`),
    suppressed: (count) => options.log.warn({ tool: command.file, suppressedLines: count }, `${stage} tool stderr: ${count} more lines not logged (more than ${MAX_STDERR_LINES_PER_SECOND} a second; the last ${STDERR_TAIL_LINES} are in the error)`),
  });

  const exited = (async () => {
    const result = await child;
    await stderrClosed;
    if (stopped.signal.aborted || options.signal.aborted) {
      if (result.exitCode === 0) return;
      throw new StoppedError(stage, command.file);
    }
    const stderrTail = options.scrub(tail.join('\n'));
    if (result.failed && result.exitCode === undefined && result.signal === undefined) {
      const missing = (result.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      throw new DumpError(`${command.file} could not start: ${options.scrub(result.shortMessage ?? 'unknown error')}`, { kind: missing ? 'missing-tool' : 'failed', stderrTail, stage });
    }
    if (result.exitCode === 0 && errors.length === 0) return;
    if (result.exitCode === 0) {
      throw new DumpError(`${command.file} exited 0 but reported errors: ${errors.join('\n')}`, { kind: 'failed', exitCode: 0, stderrTail, stage });
    }
    const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
    throw new DumpError(`${command.file} ${how}${stderrTail ? `: ${stderrTail}` : ''}`, {
      kind: result.signal ? 'failed' : engine.classify(stderrTail),
      exitCode: result.exitCode,
      signal: result.signal,
      stderrTail,
      stage,
    });
  })();

  return {
    stdout: child.stdout ?? undefined,
    stdin: child.stdin ?? undefined,
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

// Splits a stream into lines without ever holding more than MAX_STDERR_LINE_BYTES of one line
// (the rest of a longer line is counted, not kept), and logs at most MAX_STDERR_LINES_PER_SECOND
// lines a second, summarising the others. Resolves when the stream has ended.
function readLines(
  input: Readable | null,
  accept: (text: string, cutBytes: number) => string,
  report: { line(text: string): void; suppressed(count: number): void },
): Promise<void> {
  if (!input) return Promise.resolve();
  let parts: Buffer[] = [];
  let kept = 0;
  let cut = 0;
  let second = 0;
  let inSecond = 0;
  let suppressed = 0;
  const flushSuppressed = () => {
    if (suppressed > 0) report.suppressed(suppressed);
    suppressed = 0;
  };
  const emit = () => {
    const text = Buffer.concat(parts).toString('utf8').replace(/\r$/, '');
    const line = accept(text, cut);
    parts = [];
    kept = 0;
    cut = 0;
    const now = Math.floor(performance.now() / 1000);
    if (now !== second) {
      flushSuppressed();
      second = now;
      inSecond = 0;
    }
    inSecond += 1;
    if (inSecond <= MAX_STDERR_LINES_PER_SECOND) report.line(line);
    else suppressed += 1;
  };
  const add = (piece: Buffer) => {
    const room = MAX_STDERR_LINE_BYTES - kept;
    if (piece.length <= room) {
      parts.push(piece);
      kept += piece.length;
    } else {
      if (room > 0) parts.push(piece.subarray(0, room));
      kept += Math.max(0, room);
      cut += piece.length - Math.max(0, room);
    }
  };
  input.on('data', (chunk: Buffer) => {
    let start = 0;
    for (let newline = chunk.indexOf(10); newline >= 0; newline = chunk.indexOf(10, start)) {
      add(chunk.subarray(start, newline));
      emit();
      start = newline + 1;
    }
    if (start < chunk.length) add(Buffer.from(chunk.subarray(start)));
  });
  return new Promise((resolve) => {
    input.once('close', () => {
      if (kept > 0 || cut > 0) emit();
      flushSuppressed();
      resolve();
    });
  });
}
