// The completeness stage: feeds the engine's check with the raw dump and turns its verdict into a
// DumpError. Where the raw bytes pass through JavaScript it watches them as they go. Where the zstd CLI
// reads the dump tool's stdout itself (the fast path), a check that needs only the head decodes the
// first compressed bytes back instead: the rest of the raw stream never enters this process.
import { Transform } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import type { CompletenessCheck } from '../engines/marks.ts';
import { DumpError } from '../errors.ts';

// Raw bytes decoded from the start of the compressed stream for a head check: more than any head mark.
const HEAD_BYTES = 4096;

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

// Watches the zstd CLI's output and decodes its first HEAD_BYTES raw bytes for a 'head' check.
export function watchZstdHead(check: CompletenessCheck, tool: string): Watch {
  if (check.scope !== 'head') throw new Error('only a head check can be decided from the compressed stream');
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  promise.catch(() => undefined);
  const decoder = createZstdDecompress();
  let decoded = 0;
  let decided = false;
  const decide = (): void => {
    if (decided) return;
    decided = true;
    settle(check, tool, resolve, reject);
    decoder.destroy();
  };
  decoder.on('data', (raw: Buffer) => {
    if (decided) return;
    check.write(raw);
    decoded += raw.length;
    if (decoded >= HEAD_BYTES) decide();
  });
  decoder.once('end', decide);
  decoder.once('error', (error) => {
    if (decided) return;
    decided = true;
    reject(new DumpError(`the compressed dump could not be read back for its completeness check: ${error.message}`, { kind: 'incomplete' }, { cause: error }));
  });
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (!decided) decoder.write(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      if (!decided) decoder.end();
      callback();
    },
  });
  stream.once('close', () => {
    if (!decided) decoder.destroy();
  });
  return { stream, verdict: promise };
}

function settle(check: CompletenessCheck, tool: string, resolve: () => void, reject: (error: DumpError) => void): void {
  const problem = check.verdict();
  if (problem === undefined) resolve();
  else reject(new DumpError(`${tool} exited 0, but its dump is not complete: ${problem}`, { kind: 'incomplete' }));
}
