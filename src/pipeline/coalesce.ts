// Gathers small chunks into large ones before per-chunk JavaScript work: a live pg_dump writes ~8 KiB
// chunks, and Node's zlib is faster on ~1 MiB inputs (its zstd: 131 → 176 MB/s; docs/benchmarks.md).
import { Transform } from 'node:stream';

// Chunk size handed on; large enough to amortise per-chunk costs, small enough to keep memory flat.
export const COALESCE_BYTES = 1024 * 1024;

// Creates a stage that emits chunks of at least `size` bytes (the last one may be smaller).
export function coalesce(size = COALESCE_BYTES): Transform {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes < size) return callback();
      const joined = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      callback(null, joined);
    },
    flush(callback) {
      callback(null, pendingBytes > 0 ? Buffer.concat(pending, pendingBytes) : null);
    },
  });
}
