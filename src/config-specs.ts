// envalid validators for the units our variables use, shared by config.ts and each storage target.
import { makeValidator, type CleanedEnv, type CleanedEnvAccessors, type ValidatorSpec } from 'envalid';
import { parseDuration, parseSize } from './units.ts';

// A map of variable name → envalid spec, as a storage target declares its own variables.
export type EnvSpecs = Record<string, ValidatorSpec<unknown>>;

// What cleanEnv gives for such a map: each variable's parsed type, `| undefined` where it may be unset.
export type EnvValues<S extends EnvSpecs> = Omit<CleanedEnv<S>, keyof CleanedEnvAccessors>;

// Node's timers hold a signed 32-bit count of milliseconds (24.8 days): a longer one fires at once.
export const MAX_TIMER_MS = 2 ** 31 - 1;

// A duration validator that refuses anything longer than maxMs (named as `limit` in the error).
export function durationUpTo(maxMs: number, limit: string) {
  return makeValidator<number>((input) => {
    const ms = parseDuration(input);
    if (ms === undefined || ms <= 0) throw new Error(`"${input}" is not a duration (e.g. 90s, 30m, 2h)`);
    if (ms > maxMs) throw new Error(`"${input}" is longer than ${limit}`);
    return ms;
  });
}

// `90s`, `2h`, `1h30m`, `1500ms` or bare seconds → milliseconds, up to what a timer can hold.
export const duration = durationUpTo(MAX_TIMER_MS, '24 days (the longest timer Node.js can set)');

// An http:// or https:// URL (other schemes are refused: file:, ftp:, javascript: …).
export const httpUrl = makeValidator<string>((input) => {
  if (!URL.canParse(input) || /\s/.test(input)) throw new Error('is not a URL');
  const { protocol, hostname } = new URL(input);
  if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`must be an http:// or https:// URL, not ${protocol}`);
  if (hostname === '') throw new Error('has no host');
  return input;
});

// `16MiB`, `8M`, `1GiB` or bare bytes → bytes.
export const size = makeValidator<number>((input) => {
  const bytes = parseSize(input);
  if (bytes === undefined || bytes <= 0) throw new Error(`"${input}" is not a size (e.g. 16MiB, 1GiB)`);
  return bytes;
});

// A whole number ≥ 0.
export const count = makeValidator<number>((input) => {
  if (!/^\d+$/.test(input.trim())) throw new Error(`"${input}" is not a whole number`);
  return Number(input);
});

// A list: a JSON array of strings, or words separated by white space.
export const list = makeValidator<string[]>((input) => {
  const trimmed = input.trim();
  if (trimmed.startsWith('[')) return jsonStrings(trimmed);
  return trimmed === '' ? [] : trimmed.split(/\s+/);
});

// HTTP header names are tokens (RFC 9110); values may not hold CR, LF, NUL or other control characters.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

// A JSON object of HTTP headers: valid names, values without line breaks or control characters.
export const headerMap = makeValidator<Record<string, string>>((input) => {
  const headers = parseStringMap(input);
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw new Error('holds an invalid header name (a name is letters, digits and !#$%&\'*+.^_`|~- only)');
    if (!HEADER_VALUE.test(value)) throw new Error(`the value of header ${name} holds a line break or another control character`);
  }
  return headers;
});

// A JSON object of string values, e.g. extra HTTP headers.
export const stringMap = makeValidator<Record<string, string>>((input) => parseStringMap(input));

function parseStringMap(input: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(input);
  } catch {
    throw new Error('is not valid JSON (expected an object of strings)');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
    throw new Error('must be a JSON object whose values are strings');
  }
  return parsed as Record<string, string>;
}

// A JSON array of strings, the other form every list variable takes.
function jsonStrings(text: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('is not a valid JSON array');
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) throw new Error('must be a JSON array of strings');
  return parsed;
}

// Names: a JSON array of strings, or names separated by commas (white space around each is dropped).
export const nameList = makeValidator<string[]>((input) => {
  const trimmed = input.trim();
  const names = (trimmed.startsWith('[') ? jsonStrings(trimmed) : trimmed.split(',')).map((name) => name.trim());
  if (names.some((name) => name === '')) throw new Error('contains an empty name');
  return [...new Set(names)];
});
