import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { redactValue, scrubSecrets, withoutCredentials } from '../../src/redact.ts';

describe('scrubSecrets', () => {
  test('replaces whole occurrences only: a short or common secret does not garble other words', () => {
    assert.equal(scrubSecrets('role "user" has no password', ['e']), 'role "user" has no password', 'shorter than 4: never scrubbed');
    assert.equal(scrubSecrets('user postgres connected to postgres_db', ['postgres']), 'user [redacted] connected to postgres_db', 'the word, not a longer name');
    assert.equal(scrubSecrets('password=hunter22; users hunter2x', ['hunter2']), 'password=hunter22; users hunter2x');
    assert.equal(scrubSecrets('password=hunter2; ok', ['hunter2']), 'password=[redacted]; ok');
  });

  test('a secret with punctuation at its edges is replaced wherever it stands', () => {
    assert.equal(scrubSecrets('auth:p@ss!word:end', ['p@ss!word:']), 'auth:[redacted]end');
    assert.equal(scrubSecrets('x"a\'b\nc"y', ['"a\'b\nc"']), 'x[redacted]y');
  });

  test('the longest secret goes first, so one containing another goes whole', () => {
    assert.equal(scrubSecrets('key abcd-efgh-ijkl', ['abcd', 'abcd-efgh-ijkl']), 'key [redacted]');
  });

  test('every occurrence is replaced', () => {
    assert.equal(scrubSecrets('s3cret s3cret,s3cret', ['s3cret']), '[redacted] [redacted],[redacted]');
  });
});

describe('redactValue', () => {
  test("a secret variable's value is never echoed", () => {
    assert.equal(redactValue('DB_PASSWORD', 'hunter2', ['DB_PASSWORD']), '[redacted]');
  });

  test('a URL loses its user, password, query and fragment', () => {
    assert.equal(redactValue('CALLBACK_URL', 'https://u:p@cp.example/hook?token=t#f', []), 'https://cp.example/hook');
    assert.equal(redactValue('STORAGE_ENDPOINT', 'http://ak:sk@host:port/?sig=x', []), 'http://host:port/');
  });

  test('other values are echoed escaped and clipped', () => {
    assert.equal(redactValue('BACKUP_TIMEOUT', 'later\n', []), 'later\\n');
    assert.equal(redactValue('BACKUP_PATH', 'x'.repeat(500), []).length, 121);
  });
});

describe('withoutCredentials', () => {
  test('leaves a clean URL as it is', () => {
    assert.equal(withoutCredentials('https://storage.example/bucket/key.zst'), 'https://storage.example/bucket/key.zst');
  });
});
