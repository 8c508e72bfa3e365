// Shared by every target: which error a failed upload must report, so that the user sees the root
// cause (the dump died, the run was aborted) and not a follow-on error from the target's cleanup.
import type { Readable } from 'node:stream';
import { StorageError, type StorageFailure } from '../errors.ts';

// Socket and DNS error codes: the store is unreachable for now, and a later retry may succeed.
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH',
]);

// The body's own error or the abort reason when either caused the failure; undefined when the
// failure is the storage's own.
export function upstreamCause(body: Readable, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason as unknown;
  return body.errored ?? undefined;
}

// Rethrows the root cause: the body's error or abort reason if there is one, otherwise the storage
// error wrapped as a StorageError of the given kind.
export function rootCause(error: unknown, body: Readable, signal: AbortSignal, describe: string, kind: StorageFailure): Error {
  const upstream = upstreamCause(body, signal);
  if (upstream !== undefined) return upstream instanceof Error ? upstream : new Error(`aborted: ${JSON.stringify(upstream)}`);
  if (error instanceof StorageError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new StorageError(`${describe}: ${reason}`, kind, { cause: error });
}
