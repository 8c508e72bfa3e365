// Waiting for something for a bounded time: cleanup, a child's exit, a commit's answer.

// What withTimeout answers when the time ran out first.
export const TIMED_OUT = Symbol('timed out');

// Waits for `promise` for at most `ms`: its value (or its rejection), else TIMED_OUT. The promise runs
// on either way; the timer never outlives the wait, so it keeps no process alive.
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(resolve, ms, TIMED_OUT);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
