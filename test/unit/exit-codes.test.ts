import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { CallbackError, ConfigError, DeadlineError, DumpError, InterruptedError, StorageError } from '../../src/errors.ts';
import { EXIT_CODES, exitCodeFor, severity, worstExitName, type ExitName } from '../../src/exit-codes.ts';

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

describe('the exit code of several databases', () => {
  const names = Object.keys(EXIT_CODES) as ExitName[];
  const permanent = names.filter((name) => EXIT_CODES[name].retry === 'fail' && name !== 'OK' && name !== 'CALLBACK_FAILED');
  const transient = names.filter((name) => EXIT_CODES[name].retry === 'retry');

  test('a failure no retry can heal beats one a retry may heal, which beats a stored backup', () => {
    for (const fail of permanent) {
      for (const retry of transient) {
        assert.equal(worstExitName(['OK', retry, fail, 'OK']), fail, `${fail} over ${retry}`);
        assert.equal(worstExitName([fail, retry]), fail);
        assert.equal(worstExitName(['OK', retry, 'CALLBACK_FAILED']), retry, `${retry} over CALLBACK_FAILED: that backup is stored`);
      }
    }
  });

  test('a lost callback beats success; no databases, or all stored, is OK', () => {
    assert.equal(worstExitName(['OK', 'CALLBACK_FAILED', 'OK']), 'CALLBACK_FAILED');
    assert.equal(worstExitName(['OK', 'OK']), 'OK');
    assert.equal(worstExitName([]), 'OK');
  });

  test('among equally severe outcomes the first in the run decides', () => {
    assert.equal(worstExitName(['DB_UNREACHABLE', 'DUMP_FAILED']), 'DB_UNREACHABLE');
    assert.equal(worstExitName(['DUMP_FAILED', 'DB_UNREACHABLE']), 'DUMP_FAILED');
    assert.equal(worstExitName(['STORAGE_DENIED', 'DB_AUTH']), 'STORAGE_DENIED');
  });

  test('the severities: OK < CALLBACK_FAILED < DUMP_FAILED = SIGTERM < DB_AUTH = CONFIG = INTERNAL', () => {
    assert.deepEqual(
      (['OK', 'CALLBACK_FAILED', 'DUMP_FAILED', 'SIGTERM', 'DB_AUTH', 'CONFIG', 'INTERNAL'] as const).map(severity),
      [0, 1, 2, 2, 3, 3, 3],
    );
  });
});
