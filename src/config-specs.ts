// envalid validators for the units our variables use, shared by config.ts and each storage target.
import { makeValidator, type ValidatorSpec } from 'envalid';
import { parseDuration, parseSize } from './units.ts';

// A map of variable name → envalid spec, as a storage target declares its own variables.
export type EnvSpecs = Record<string, ValidatorSpec<unknown>>;

// `90s`, `2h`, `1h30m`, `1500ms` or bare seconds → milliseconds.
export const duration = makeValidator<number>((input) => {
  const ms = parseDuration(input);
  if (ms === undefined || ms <= 0) throw new Error(`"${input}" is not a duration (e.g. 90s, 30m, 2h)`);
  return ms;
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
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error('is not a valid JSON array');
    }
    if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
      throw new Error('must be a JSON array of strings');
    }
    return parsed;
  }
  return trimmed === '' ? [] : trimmed.split(/\s+/);
});

// A JSON object of string values, e.g. extra HTTP headers.
export const stringMap = makeValidator<Record<string, string>>((input) => {
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
});

// Names: a JSON array of strings, or names separated by commas (white space around each is dropped).
export const nameList = makeValidator<string[]>((input) => {
  const trimmed = input.trim();
  let names: string[];
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new Error('is not a valid JSON array');
    }
    if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) throw new Error('must be a JSON array of strings');
    names = parsed.map((name) => name.trim());
  } else {
    names = trimmed.split(',').map((name) => name.trim());
  }
  if (names.some((name) => name === '')) throw new Error('contains an empty name');
  return [...new Set(names)];
});
