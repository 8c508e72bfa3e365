// One error class per stage of a run. Each carries flat facts (stage, kind) that the exit-code
// mapping and the failure callback read; messages never contain secrets (callers scrub first).

// Where in the run a failure happened; also the `error.stage` of the failure callback.
export type Stage = 'config' | 'dump' | 'compress' | 'encrypt' | 'decrypt' | 'storage' | 'restore' | 'verify' | 'callback' | 'deadline' | 'signal' | 'internal';

// Base of every error this program raises on purpose.
export class PlanBError extends Error {
  readonly stage: Stage;
  constructor(stage: Stage, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.stage = stage;
  }
}

// Configuration is missing or invalid; `problems` names every bad variable.
// `warnings` (not fatal: unknown variables) are logged beside it.
export class ConfigError extends PlanBError {
  readonly problems: readonly string[];
  readonly warnings: readonly string[];
  constructor(problems: readonly string[], warnings: readonly string[] = []) {
    super('config', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
    this.warnings = warnings;
  }
}

// How a dump failed, as far as the tool's exit and stderr tell; `incomplete`: the tool exited 0 but its
// output lacks the marks of a complete dump (or a preflight found the database damaged); `invalid`: the
// tool refused the request itself (no such database, an unknown option), which no retry fixes.
export type DumpFailure = 'unreachable' | 'auth' | 'invalid' | 'failed' | 'empty' | 'incomplete' | 'missing-tool';

// The dump tool (or the compressor fed by it), or a restore tool, failed: non-zero exit, death by
// signal, no output.
export class DumpError extends PlanBError {
  readonly kind: DumpFailure;
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;
  constructor(
    message: string,
    facts: { kind: DumpFailure; exitCode?: number | undefined; signal?: string | undefined; stderrTail?: string; stage?: 'dump' | 'compress' | 'restore' },
    options?: ErrorOptions,
  ) {
    super(facts.stage ?? 'dump', message, options);
    this.kind = facts.kind;
    this.exitCode = facts.exitCode;
    this.signal = facts.signal;
    this.stderrTail = facts.stderrTail ?? '';
  }
}

// How encryption or decryption failed: the CLI is missing from the image, the identity file holds no
// key for this object or cannot be read, the object is damaged or truncated, or age failed otherwise.
export type EncryptionFailure = 'missing-tool' | 'wrong-identity' | 'identity-file' | 'corrupt' | 'failed';

// The age stage failed (encrypting a backup, or decrypting one for a restore).
export class EncryptionError extends PlanBError {
  readonly kind: EncryptionFailure;
  readonly exitCode: number | undefined;
  constructor(message: string, facts: { kind: EncryptionFailure; stage: 'encrypt' | 'decrypt'; exitCode?: number | undefined }, options?: ErrorOptions) {
    super(facts.stage, message, options);
    this.kind = facts.kind;
    this.exitCode = facts.exitCode;
  }
}

// A stage the run stopped (killed, or tore down) because something else failed first: never the cause
// of a failure, so whatever decides the reported cause skips it (pipeline/first-failure.ts).
export class StoppedError extends PlanBError {
  constructor(stage: Stage, what: string) {
    super(stage, `${what} was stopped`);
  }
}

// How a storage failure should be treated: `denied` will not heal by retrying, `unavailable` may,
// `missing` is an object that is not there (a restore of a wrong key).
export type StorageFailure = 'denied' | 'unavailable' | 'missing' | 'other';

// Writing the object failed; nothing is left at the key.
export class StorageError extends PlanBError {
  readonly kind: StorageFailure;
  constructor(message: string, kind: StorageFailure, options?: ErrorOptions) {
    super('storage', message, options);
    this.kind = kind;
  }
}

// A verification restored the object and found it differs from what was dumped (or did not restore).
export class VerifyError extends PlanBError {
  constructor(message: string, options?: ErrorOptions) {
    super('verify', message, options);
  }
}

// A verification could not run here (no server binaries, too little disk or memory, running as root
// without VERIFY_RUN_AS): nothing was verified, which is never a success.
export class VerifyUnavailableError extends PlanBError {
  constructor(message: string, options?: ErrorOptions) {
    super('verify', message, options);
  }
}

// The backup is stored but the control plane could not be told.
export class CallbackError extends PlanBError {
  readonly attempts: number;
  readonly status: number | undefined;
  constructor(message: string, facts: { attempts: number; status?: number | undefined }, options?: ErrorOptions) {
    super('callback', message, options);
    this.attempts = facts.attempts;
    this.status = facts.status;
  }
}

// BACKUP_TIMEOUT ran out before the backup was stored.
export class DeadlineError extends PlanBError {
  constructor(timeoutMs: number) {
    super('deadline', `backup did not finish within BACKUP_TIMEOUT (${timeoutMs} ms)`);
  }
}

// The process was asked to stop (SIGTERM from the platform, SIGINT from a person).
export class InterruptedError extends PlanBError {
  readonly signal: 'SIGTERM' | 'SIGINT';
  constructor(signal: 'SIGTERM' | 'SIGINT') {
    super('signal', `interrupted by ${signal}`);
    this.signal = signal;
  }
}

// The message of anything thrown.
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
