// Readers of what a probe's query prints, shared by the engines.

// A non-negative whole number printed by a query (a size in bytes); throws on anything else.
export function wholeNumber(text: string | undefined): number {
  const trimmed = text?.trim() ?? '';
  const value = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(value)) throw new Error(`expected a whole number, got ${JSON.stringify(text?.slice(0, 80) ?? '')}`);
  return value;
}

// The lines of a query's output, without empty ones and without a trailing carriage return.
export function lines(stdout: string): string[] {
  return stdout.split('\n').map((line) => line.replace(/\r$/, '')).filter((line) => line !== '');
}
