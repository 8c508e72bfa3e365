// Notices a store that stopped taking bytes (an endpoint that accepts the connection and then never
// answers), so the run fails in minutes instead of holding the database's snapshot open until a
// deadline. It watches the last stage before the store: a stall is time during which bytes were
// waiting there (or the body had ended and the store had not yet confirmed) and none was taken.
// A dump that is merely slow to produce leaves nothing waiting, and is never a stall.
import type { Transform } from 'node:stream';

// How often progress is sampled; the timeout is at least a few of these.
const SAMPLE_MS = 1000;

// Starts watching; `bytesIn` counts the bytes written into `last`. Calls onStall once when no byte
// was taken for `timeoutMs` while some were waiting. stop() ends the watch.
export function watchStall(last: Transform, bytesIn: () => number, timeoutMs: number, onStall: () => void): { stop(): void } {
  let taken = -1;
  let since = performance.now();
  const sample = () => {
    const held = last.writableLength + last.readableLength;
    const now = bytesIn() - held;
    const waiting = held > 0 || last.readableEnded;
    if (now !== taken || !waiting) {
      taken = now;
      since = performance.now();
      return;
    }
    if (performance.now() - since >= timeoutMs) {
      clearInterval(timer);
      onStall();
    }
  };
  const timer = setInterval(sample, Math.min(SAMPLE_MS, Math.max(50, timeoutMs / 4)));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
