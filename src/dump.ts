// Starts the dump tool as a child process: credential files written 0600 in a private temp dir and
// removed on every exit path, a minimal environment, stderr logged (scrubbed), and an `exited`
// promise that rejects with a DumpError naming the failure and carrying the stderr tail.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import { DumpError } from './errors.ts';
import type { DumpCommand, DumpEngine } from './engines/types.ts';
import type { Logger } from './log.ts';

// Time between SIGTERM and SIGKILL when the dump must stop (abort, failure elsewhere).
const KILL_GRACE_MS = 3_000;
// Lines of the tool's stderr kept for the error message.
const STDERR_TAIL_LINES = 15;
// The version probe must not hold up a backup.
const VERSION_TIMEOUT_MS = 5_000;

export type RunningDump = {
  // The tool's output; undefined when it writes straight into `options.stdout`.
  stdout: Readable | undefined;
  // The tool's input when started with `stdin: 'pipe'` (a restore tool reading the dump).
  stdin: Writable | undefined;
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

  const tail: string[] = [];
  const errors: string[] = [];
  const lines = createInterface({ input: child.stderr });
  lines.on('line', (raw) => {
    const line = options.scrub(raw);
    tail.push(line);
    if (tail.length > STDERR_TAIL_LINES) tail.shift();
    const rule = options.errorLines;
    if (rule && rule.match.test(line) && !rule.benign.test(line) && errors.length < STDERR_TAIL_LINES) errors.push(line);
    options.log.info({ tool: command.file, stderr: line }, `${stage} tool stderr`);
  });
  const stderrClosed = new Promise<void>((resolve) => lines.once('close', resolve));

  const exited = (async () => {
    const result = await child;
    await stderrClosed;
    if (stopped.signal.aborted || options.signal.aborted) {
      if (result.exitCode === 0) return;
      throw new DumpError(`${command.file} was stopped`, { kind: 'failed', exitCode: result.exitCode, signal: result.signal, stage });
    }
    const stderrTail = tail.join('\n');
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
