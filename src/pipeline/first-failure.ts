// Which failure explains a run's others. Stages fail in a chain: the store failing makes the dump die
// of a broken pipe, the dump failing makes the upload abort, age failing makes the compressor's writes
// fail. Each stage reports its own failure here as it happens, and the cause is decided by kind, not by
// timing alone:
// - a stage the run stopped itself (a StoppedError) never counts;
// - a tool killed by a broken pipe (SIGPIPE, or a shell's exit 141) lost its reader: that is the
//   reader's failure, so it counts only when no other stage failed (a store may tear down the body it
//   reads before it rejects with its own error);
// - otherwise the first failure recorded is the cause.
import { DumpError, StoppedError } from '../errors.ts';

// A shell reports a child killed by signal 13 (SIGPIPE) as 128 + 13.
const SHELL_SIGPIPE_EXIT = 141;

export type FirstFailure = {
  // Keeps `error` if it is the first failure of its own.
  record(error: unknown): void;
  // Watches a stage's promise: its rejection is recorded when it happens.
  watch(settles: Promise<unknown> | undefined): void;
  // The cause, once every stage has settled; undefined when no stage failed on its own.
  readonly first: unknown;
};

export function firstFailure(): FirstFailure {
  let first: { error: unknown } | undefined;
  let brokenPipe: { error: unknown } | undefined;
  const record = (error: unknown): void => {
    if (error instanceof StoppedError) return;
    if (diedOfBrokenPipe(error)) brokenPipe ??= { error };
    else first ??= { error };
  };
  return {
    record,
    watch: (settles) => {
      settles?.catch(record);
    },
    get first() {
      return (first ?? brokenPipe)?.error;
    },
  };
}

// Whether a tool died because what read its output went away.
export function diedOfBrokenPipe(error: unknown): boolean {
  return error instanceof DumpError && (error.signal === 'SIGPIPE' || error.exitCode === SHELL_SIGPIPE_EXIT);
}
