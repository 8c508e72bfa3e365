// Plans and cuts the parts of a multipart upload (S3 parts, Azure blocks).
//
// planParts sizes the parts before the first byte, from the store's limits and the expected size: equal
// parts, in whole MiB, so that the expected size (times SIZE_HINT_MARGIN, as it is an estimate) fits in
// the store's part count. cutParts cuts a byte stream into those parts in a fixed set of part buffers
// that are reused: a stream of any length allocates the same few part-sized buffers and frees none until
// it ends. Memory then no longer depends on when the garbage collector frees a sent part or on how malloc
// reuses freed multi-MiB blocks, which made the job's peak grow with the dump's length (docs/benchmarks.md, bar 3).
import { Transform } from 'node:stream';

const MiB = 1024 ** 2;

// A size hint is an estimate: parts are sized so that a dump this many times larger still fits.
export const SIZE_HINT_MARGIN = 2;
// Part-sized buffers beyond those in flight: the part being filled while they upload.
export const EXTRA_PART_BUFFERS = 1;
// Part sizes are whole MiB, for readable logs.
const PART_ALIGNMENT = MiB;

// One store's multipart limits, and the defaults chosen for it.
export type PartLimits = {
  maxParts: number;
  minPartSize: number;
  maxPartSize: number;
  maxObjectSize: number;
  defaultPartSize: number;
  defaultConcurrency: number;
  // How many times the hint a configured part size is raised to hold when it is too small: 1 keeps
  // it as close to the user's choice as fits, SIZE_HINT_MARGIN gives it the default's headroom.
  configuredMargin: number;
};

// How one upload is cut into parts, and what that costs.
type PartPlan = {
  partSize: number;
  concurrency: number;
  // The largest object this plan can store (the part count, and the store's object limit).
  capacity: number;
  // Memory of the part buffers: partSize × (concurrency + EXTRA_PART_BUFFERS).
  bufferBytes: number;
  // Set when the configured part size was too small for the size hint and had to be raised.
  raisedFrom?: number;
};

// Chooses part size and concurrency from the expected size (if any) and the user's settings (if any).
export function planParts(limits: PartLimits, sizeHint: number | undefined, configured: { partSize?: number | undefined; concurrency?: number | undefined } = {}): PartPlan {
  const hint = sizeHint !== undefined && Number.isFinite(sizeHint) && sizeHint > 0 ? sizeHint : 0;
  // The smallest aligned part that holds `times` the hint in the store's part count.
  const fitting = (times: number) => Math.ceil(Math.min(hint * times, limits.maxObjectSize) / limits.maxParts / PART_ALIGNMENT) * PART_ALIGNMENT;
  const wanted =
    configured.partSize === undefined ? Math.max(limits.defaultPartSize, fitting(SIZE_HINT_MARGIN)) : Math.max(configured.partSize, fitting(limits.configuredMargin));
  const partSize = Math.min(Math.max(wanted, limits.minPartSize), limits.maxPartSize);
  const concurrency = configured.concurrency ?? limits.defaultConcurrency;
  return {
    partSize,
    concurrency,
    capacity: Math.min(partSize * limits.maxParts, limits.maxObjectSize),
    bufferBytes: partSize * (concurrency + EXTRA_PART_BUFFERS),
    ...(configured.partSize !== undefined && partSize > configured.partSize && { raisedFrom: configured.partSize }),
  };
}

// Passes a body on until more than `capacity` bytes came through, then fails at once with `tooLarge()`:
// the moment the plan certainly cannot hold the body, not when the part past the limit is refused.
export function capacityGuard(capacity: number, tooLarge: () => Error): Transform {
  let received = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received <= capacity) callback(null, chunk);
      else callback(tooLarge());
    },
  });
}

// One part: `data` is valid until `release()`, which gives its buffer back for a later part.
export type Part = { number: number; data: Buffer; last: boolean; release(): void };

// What a cut cost, filled in while it runs: the part buffers it ever allocated (never more than
// `buffers`, whatever the length of the stream) and the parts it yielded.
export type CutStats = { buffersAllocated: number; parts: number };

// Yields parts of exactly `partSize` bytes (the last one may be shorter, and is the only one marked
// `last`; an empty stream yields one empty last part). At most `buffers` parts are held at once: when
// all are unreleased, the next part waits for a release. `stats`, when given, is kept up to date.
export async function* cutParts(
  body: AsyncIterable<Buffer>,
  partSize: number,
  buffers: number,
  stats: CutStats = { buffersAllocated: 0, parts: 0 },
): AsyncGenerator<Part> {
  const free: Buffer[] = [];
  let released: (() => void) | undefined;
  const take = async (): Promise<Buffer> => {
    while (free.length === 0 && stats.buffersAllocated >= buffers) await new Promise<void>((resolve) => (released = resolve));
    const reused = free.pop();
    if (reused) return reused;
    stats.buffersAllocated += 1;
    // Outside Node's shared pool, and left uninitialised: its pages cost memory only once written.
    return Buffer.allocUnsafeSlow(partSize);
  };
  let number = 0;
  let current = await take();
  let filled = 0;
  const part = (last: boolean): Part => {
    const buffer = current;
    let done = false;
    number += 1;
    stats.parts = number;
    return {
      number,
      data: buffer.subarray(0, filled),
      last,
      release: () => {
        if (done) return;
        done = true;
        free.push(buffer);
        released?.();
        released = undefined;
      },
    };
  };
  for await (const chunk of body) {
    let offset = 0;
    while (offset < chunk.length) {
      // A full part goes out only once more bytes exist: a body of exactly one part stays a single PUT.
      if (filled === partSize) {
        yield part(false);
        current = await take();
        filled = 0;
      }
      const copied = chunk.copy(current, filled, offset);
      filled += copied;
      offset += copied;
    }
  }
  yield part(true);
}
