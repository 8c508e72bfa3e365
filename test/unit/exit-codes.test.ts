import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { CallbackError, ConfigError, DeadlineError, DumpError, InterruptedError, StorageError } from '../../src/errors.ts';
import { EXIT_CODES, exitCodeFor } from '../../src/exit-codes.ts';

test('the README exit-code table equals the one in src/exit-codes.ts', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.split('## Exit codes')[1]?.split('\n## ')[0] ?? '';
  const rows = [...section.matchAll(/^\| (\d+) \| (\w+) \| (retry|fail|—) \| (.+) \|$/gm)].map(([, code, name, retry, meaning]) => ({ code: Number(code), name, retry, meaning }));
  const expected = Object.entries(EXIT_CODES).map(([name, entry]) => ({ code: entry.code, name, retry: entry.code === 0 ? '—' : entry.retry, meaning: entry.meaning }));
  assert.deepEqual(rows, expected);
});

test('codes are unique and fit in a process exit status', () => {
  const codes = Object.values(EXIT_CODES).map((entry) => entry.code);
  assert.equal(new Set(codes).size, codes.length);
  for (const code of codes) assert.ok(code >= 0 && code <= 255);
});

test('each failure maps to its documented code', () => {
  assert.equal(exitCodeFor(undefined), 0);
  assert.equal(exitCodeFor(new ConfigError(['X is required'])), 78);
  assert.equal(exitCodeFor(new DumpError('refused', { kind: 'unreachable' })), 69);
  assert.equal(exitCodeFor(new DumpError('denied', { kind: 'auth' })), 77);
  assert.equal(exitCodeFor(new DumpError('exit 1', { kind: 'failed' })), 65);
  assert.equal(exitCodeFor(new DumpError('nothing', { kind: 'empty' })), 65);
  assert.equal(exitCodeFor(new DumpError('no pg_dump', { kind: 'missing-tool' })), 70);
  assert.equal(exitCodeFor(new StorageError('403', 'denied')), 73);
  assert.equal(exitCodeFor(new StorageError('503', 'unavailable')), 74);
  assert.equal(exitCodeFor(new StorageError('?', 'other')), 74);
  assert.equal(exitCodeFor(new CallbackError('down', { attempts: 6 })), 76);
  assert.equal(exitCodeFor(new DeadlineError(1000)), 124);
  assert.equal(exitCodeFor(new InterruptedError('SIGINT')), 130);
  assert.equal(exitCodeFor(new InterruptedError('SIGTERM')), 143);
  assert.equal(exitCodeFor(new TypeError('bug')), 70);
});
