// Parsing of the human units users write in variables: durations (`90s`, `2h`) and sizes (`16MiB`).

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const SIZE_UNITS = {
  b: 1,
  k: 1000, kb: 1000, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: 1024 ** 3, gib: 1024 ** 3, ti: 1024 ** 4, tib: 1024 ** 4,
} as const;

// `1h30m`, `90s`, `2h`, `1500ms`; a bare number is seconds. Returns milliseconds or undefined.
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== trimmed) return undefined;
  return Math.round(parts.reduce((sum, [, n, unit]) => sum + Number(n) * DURATION_UNITS[unit as keyof typeof DURATION_UNITS], 0));
}

// `16MiB`, `8M`, `1GiB`, `1048576`; a bare number is bytes. Returns bytes or undefined.
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(text.trim().toLowerCase());
  if (!match) return undefined;
  const unit = (match[2] || 'b') as keyof typeof SIZE_UNITS;
  if (!(unit in SIZE_UNITS)) return undefined;
  return Math.round(Number(match[1]) * SIZE_UNITS[unit]);
}

// Bytes as a short human string for logs: 1.5 GiB.
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  return `${value.toFixed(index === 0 ? 0 : 1)} ${units[index]}`;
}

// Milliseconds as a short human string for messages: 1500 ms, 90 s, 5 min, 2 h.
export function formatDuration(ms: number): string {
  if (ms < 10_000) return `${ms} ms`;
  if (ms < 600_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}
