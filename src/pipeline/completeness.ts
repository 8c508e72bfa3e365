// The completeness stage: feeds the engine's check with the raw dump and turns its verdict into a
// DumpError. Where the raw bytes pass through JavaScript it watches them as they go. Where the zstd CLI
// reads the dump tool's stdout itself (the fast path), it decodes zstd's output back instead, so the
// raw stream's many small chunks never enter this process; a check of the head stops decoding early.
import { Transform } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import type { CompletenessCheck } from '../engines/marks.ts';
import { DumpError } from '../errors.ts';

// Raw bytes decoded from the start of the compressed stream for a head check: more than any head mark.
const HEAD_BYTES = 4096;
// Output chunks of the decoder: large, so that the per-chunk work in JavaScript stays small.
const DECODE_CHUNK_BYTES = 256 * 1024;

// A watching stage and the check's outcome: `verdict` resolves once the stream has ended and the check
// passed, and rejects with a DumpError (kind `incomplete`) naming what is missing.
export type Watch = { stream: Transform; verdict: Promise<void> };

// Watches raw chunks on their way to the compressor (or to storage).
export function watchRaw(check: CompletenessCheck, tool: string): Watch {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      check.write(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      settle(check, tool, resolve, reject);
      callback();
    },
  });
  promise.catch(() => undefined);
  return { stream, verdict: promise };
}

// Watches the zstd CLI's output and decodes it back for the check: only the first HEAD_BYTES for a
// 'head' check, all of it otherwise (in zlib's thread pool, in large chunks: far cheaper than passing
// the raw dump's small chunks through this process). The decoder holds the stream back when it lags,
// so memory stays bounded.
export function watchZstd(check: CompletenessCheck, tool: string): Watch {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  promise.catch(() => undefined);
  const decoder = createZstdDecompress({ chunkSize: DECODE_CHUNK_BYTES });
  let decoded = 0;
  let decided = false;
  // The stage's callback while the decoder is full.
  let waiting: (() => void) | undefined;
  const release = (): void => {
    const next = waiting;
    waiting = undefined;
    next?.();
  };
  const decide = (): void => {
    if (decided) return;
    decided = true;
    settle(check, tool, resolve, reject);
    decoder.destroy();
    release();
  };
  decoder.on('data', (raw: Buffer) => {
    if (decided) return;
    check.write(raw);
    decoded += raw.length;
    if (check.scope === 'head' && decoded >= HEAD_BYTES) decide();
  });
  decoder.on('drain', release);
  decoder.once('end', decide);
  decoder.once('error', (error) => {
    if (decided) return;
    decided = true;
    reject(new DumpError(`the compressed dump could not be read back for its completeness check: ${error.message}`, { kind: 'incomplete' }, { cause: error }));
    release();
  });
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (decided || decoder.write(chunk)) return callback(null, chunk);
      waiting = () => callback(null, chunk);
    },
    // The stage ends once the decoder has read the last byte and the check has decided.
    flush(callback) {
      if (!decided) decoder.end();
      promise.then(() => callback(), () => callback());
    },
  });
  // Closed early (the run failed elsewhere): stop decoding.
  stream.once('close', () => {
    if (!decided) decoder.destroy();
    release();
  });
  return { stream, verdict: promise };
}

function settle(check: CompletenessCheck, tool: string, resolve: () => void, reject: (error: DumpError) => void): void {
  const problem = check.verdict();
  if (problem === undefined) resolve();
  else reject(new DumpError(`${tool} exited 0, but its dump is not complete: ${problem}`, { kind: 'incomplete' }));
}
