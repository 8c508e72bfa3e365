// Building blocks for the engines' completeness checks: each watches the raw dump, in bounded memory,
// for the marks its tool leaves on a complete dump. Pure: bytes in, a verdict out.

// Watches the raw dump for the tool's own marks of a complete dump. A check whose scope is 'head'
// needs only the first bytes, so the pipeline may keep the rest of the raw stream out of JavaScript.
export type CompletenessCheck = {
  scope: 'head' | 'stream';
  // Sees every raw chunk in order ('head' checks: at least the first `headBytes` of them).
  write(chunk: Buffer): void;
  // After the last byte: why the dump is not complete, or undefined when it is.
  verdict(): string | undefined;
};

// Keeps the first `headSize` and the last `tailSize` bytes of a stream (the tail across chunks).
export function edges(headSize: number, tailSize: number): { write(chunk: Buffer): void; head(): Buffer; tail(): Buffer; total(): number } {
  const head = Buffer.alloc(headSize);
  let headLength = 0;
  let tail = Buffer.alloc(0);
  let total = 0;
  return {
    write(chunk) {
      total += chunk.length;
      if (headLength < headSize) headLength += chunk.copy(head, headLength, 0, Math.min(chunk.length, headSize - headLength));
      if (tailSize === 0) return;
      tail = chunk.length >= tailSize ? Buffer.from(chunk.subarray(chunk.length - tailSize)) : Buffer.concat([tail, chunk]).subarray(-tailSize);
    },
    head: () => head.subarray(0, headLength),
    tail: () => tail,
    total: () => total,
  };
}

// A check that looks only at the first and last bytes of the dump.
export function edgeCheck(options: { scope: 'head' | 'stream'; head: number; tail: number; judge(head: Buffer, tail: Buffer): string | undefined }): CompletenessCheck {
  const seen = edges(options.head, options.tail);
  return { scope: options.scope, write: (chunk) => seen.write(chunk), verdict: () => options.judge(seen.head(), seen.tail()) };
}

// Finds the first of `needles` anywhere in a stream, keeping only a carry-over window of
// (longest needle − 1) bytes between chunks, so a needle split across two chunks is still found.
// found(): the rest of the line it starts, up to LINE_BYTES (as far as that chunk holds it).
export function scanner(needles: readonly string[]): { write(chunk: Buffer): void; found(): string | undefined } {
  const patterns = needles.map((needle) => Buffer.from(needle, 'latin1'));
  const keep = Math.max(...patterns.map((p) => p.length)) - 1;
  let carry = Buffer.alloc(0);
  let line: Buffer | undefined;
  let complete = false;
  const extend = (more: Buffer): void => {
    line = Buffer.concat([line ?? Buffer.alloc(0), more.subarray(0, LINE_BYTES - (line?.length ?? 0))]);
    const end = line.indexOf(0x0a);
    if (end >= 0) line = line.subarray(0, end);
    complete = end >= 0 || line.length >= LINE_BYTES;
  };
  return {
    write(chunk) {
      if (line !== undefined) {
        if (!complete) extend(chunk);
        return;
      }
      // A needle that starts in the carried bytes ends within the first `keep` bytes of this chunk.
      const window = Buffer.concat([carry, chunk.subarray(0, keep)]);
      const first = (bytes: Buffer) => Math.min(...patterns.map((pattern) => bytes.indexOf(pattern)).filter((index) => index >= 0));
      const inWindow = first(window);
      if (inWindow < carry.length) {
        extend(Buffer.concat([window.subarray(inWindow), chunk.subarray(keep)]));
        return;
      }
      const inChunk = first(chunk);
      if (Number.isFinite(inChunk)) {
        extend(chunk.subarray(inChunk));
        return;
      }
      carry = chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([carry, chunk]).subarray(-keep);
    },
    found: () => line?.toString('latin1'),
  };
}

// How much of the line a found needle starts is kept for the message.
const LINE_BYTES = 120;

// `text` as printable ASCII for a message: what a dump started or ended with, never more than a few bytes.
export function printable(bytes: Buffer): string {
  return JSON.stringify(bytes.toString('latin1').replace(/[^\x20-\x7e]/g, '.'));
}
