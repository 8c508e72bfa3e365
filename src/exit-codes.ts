// The exit-code table: the one place that decides what a run's outcome means to a scheduler.
// README.md repeats it and deploy/kubernetes derives its podFailurePolicy from it (tests keep all three equal).
import {
  CallbackError,
  ConfigError,
  DeadlineError,
  DumpError,
  EncryptionError,
  InterruptedError,
  PlanBError,
  StorageError,
  VerifyError,
  VerifyUnavailableError,
} from './errors.ts';

// What a scheduler should do when it sees a code: retry the run, or stop and tell a person.
export type Retry = 'retry' | 'fail';

// Every code this program exits with on purpose. Codes follow sysexits.h where one fits, and the
// shell's 128+N for signals; anything not listed (Node's own 1–14, 137 = SIGKILL/OOM) is a failure.
export const EXIT_CODES = {
  OK: { code: 0, retry: 'fail', meaning: 'Backup stored and, if configured, the callback delivered.' },
  DUMP_FAILED: { code: 65, retry: 'retry', meaning: 'The dump or restore tool, the (de)compressor or the encryption failed: non-zero exit, killed, no output, or a dump without its marks of completeness.' },
  DB_INVALID: { code: 66, retry: 'fail', meaning: 'The dump tool refused the request itself: no such database, or an option in DB_EXTRA_ARGS it does not accept.' },
  DB_UNREACHABLE: { code: 69, retry: 'retry', meaning: 'The database could not be reached (connection refused, DNS, timeout).' },
  INTERNAL: { code: 70, retry: 'fail', meaning: 'A bug in Plan B: an unexpected error. Please report it with the log.' },
  STORAGE_DENIED: { code: 73, retry: 'fail', meaning: 'Storage refused the credentials or the permission (401/403), or the bucket or the object to restore is missing.' },
  STORAGE_FAILED: { code: 74, retry: 'retry', meaning: 'Storage was unavailable, throttled or failed otherwise; nothing was left at the key.' },
  CALLBACK_FAILED: { code: 76, retry: 'fail', meaning: 'Backup stored, but the callback could not be delivered; do not re-run the dump for it.' },
  DB_AUTH: { code: 77, retry: 'fail', meaning: 'The database refused the credentials or the permission to dump.' },
  CONFIG: { code: 78, retry: 'fail', meaning: 'Configuration invalid or missing; every bad variable is named in the log.' },
  VERIFY_FAILED: { code: 80, retry: 'fail', meaning: 'Verification failed: the object did not restore, or its row/key counts differ from the dump\'s.' },
  VERIFY_UNAVAILABLE: { code: 81, retry: 'fail', meaning: 'Verification could not run (no server binaries, too little disk or memory, root without VERIFY_RUN_AS); nothing was verified.' },
  DEADLINE: { code: 124, retry: 'retry', meaning: 'BACKUP_TIMEOUT ran out; the run was aborted and nothing was stored.' },
  SIGINT: { code: 130, retry: 'retry', meaning: 'Interrupted by SIGINT; the run was aborted and nothing was stored.' },
  SIGTERM: { code: 143, retry: 'retry', meaning: 'Stopped by SIGTERM (platform shutdown); the run was aborted and nothing was stored.' },
} as const satisfies Record<string, { code: number; retry: Retry; meaning: string }>;

export type ExitName = keyof typeof EXIT_CODES;

// The single mapping from an error (or its absence) to the name of its exit code.
export function exitNameFor(error: unknown): ExitName {
  if (error === undefined) return 'OK';
  if (error instanceof ConfigError) return 'CONFIG';
  if (error instanceof InterruptedError) return error.signal;
  if (error instanceof DeadlineError) return 'DEADLINE';
  if (error instanceof DumpError) {
    switch (error.kind) {
      case 'unreachable':
        return 'DB_UNREACHABLE';
      case 'auth':
        return 'DB_AUTH';
      case 'invalid':
        return 'DB_INVALID';
      case 'missing-tool':
        return 'INTERNAL';
      case 'failed':
      case 'empty':
      case 'incomplete':
        return 'DUMP_FAILED';
    }
  }
  if (error instanceof EncryptionError) {
    switch (error.kind) {
      case 'missing-tool':
        return 'INTERNAL';
      // Decrypting with an identity file that holds no key for the object, or cannot be read.
      case 'wrong-identity':
      case 'identity-file':
        return 'CONFIG';
      case 'corrupt':
      case 'failed':
        return 'DUMP_FAILED';
    }
  }
  if (error instanceof StorageError) return error.kind === 'denied' || error.kind === 'missing' ? 'STORAGE_DENIED' : 'STORAGE_FAILED';
  if (error instanceof CallbackError) return 'CALLBACK_FAILED';
  if (error instanceof VerifyError) return 'VERIFY_FAILED';
  if (error instanceof VerifyUnavailableError) return 'VERIFY_UNAVAILABLE';
  if (error instanceof PlanBError) return 'INTERNAL';
  return 'INTERNAL';
}

// The numeric exit code for an error (or 0 for none).
export function exitCodeFor(error: unknown): number {
  return EXIT_CODES[exitNameFor(error)].code;
}

// How bad an outcome is when several databases' outcomes make one exit code (DB_NAMES): a backup
// stored (OK, or CALLBACK_FAILED: stored, only the callback was lost) < a failure a retry may heal
// < a failure a retry cannot heal. A retry re-dumps every database of the task, and a 'fail' one fails
// again, so once one is there, retrying only repeats the work: the person it calls for is needed anyway.
export function severity(name: ExitName): number {
  if (name === 'OK') return 0;
  if (name === 'CALLBACK_FAILED') return 1;
  return EXIT_CODES[name].retry === 'retry' ? 2 : 3;
}

// The exit of a run that backed up several databases: the most severe outcome, the first of them in
// the run's order when several are as severe; OK when there are none.
export function worstExitName(names: readonly ExitName[]): ExitName {
  return names.reduce<ExitName>((worst, name) => (severity(name) > severity(worst) ? name : worst), 'OK');
}
