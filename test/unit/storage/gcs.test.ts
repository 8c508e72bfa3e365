// STORAGE_TYPE=gcs without a server: the settings' validators, the credentials JSON, failure classification.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError } from '../../../src/errors.ts';
import { gcs } from '../../../src/storage/gcs.ts';
import { settingsFrom } from '../../support/storage-settings.ts';

const MiB = 1024 * 1024;
const BUCKET = 'planb-gcs-test';

test('STORAGE_PART_SIZE must be a multiple of 256 KiB, and STORAGE_CLASS a GCS class', () => {
  assert.equal(settingsFrom(gcs, { STORAGE_PART_SIZE: '8MiB' }).STORAGE_PART_SIZE, 8 * MiB);
  assert.throws(() => settingsFrom(gcs, { STORAGE_PART_SIZE: '1000000' }), /STORAGE_PART_SIZE/);
  assert.throws(() => settingsFrom(gcs, { STORAGE_PART_SIZE: '128KiB' }), /STORAGE_PART_SIZE/);
  assert.throws(() => settingsFrom(gcs, { STORAGE_CLASS: 'GLACIER' }), /STORAGE_CLASS/);
});

test('GCS_CREDENTIALS_JSON must be credentials JSON, is never echoed, and can come from GCS_CREDENTIALS_JSON_FILE', async () => {
  const base = { DB_TYPE: 'postgresql', DB_NAME: 'app', STORAGE_TYPE: 'gcs', STORAGE_BUCKET: BUCKET };
  const broken = '{"type":"service_account","private_key":"not-a-real-key secret-material';
  assert.throws(() => loadConfig({ ...base, GCS_CREDENTIALS_JSON: broken }), (error) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /GCS_CREDENTIALS_JSON: is not valid JSON/);
    assert.doesNotMatch(error.message, /secret-material/);
    return true;
  });
  assert.throws(() => loadConfig({ ...base, GCS_CREDENTIALS_JSON: '{"type":"service_account"}' }), /client_email and private_key/);

  const key = JSON.stringify({ type: 'service_account', client_email: 'backup@p.iam.gserviceaccount.com', private_key: 'not-a-real-key-0123456789' });
  const dir = await mkdtemp(join(tmpdir(), 'planb-gcs-'));
  try {
    await writeFile(join(dir, 'key.json'), `${key}\n`, { mode: 0o600 });
    const config = loadConfig({ ...base, GCS_CREDENTIALS_JSON_FILE: join(dir, 'key.json') });
    assert.equal(config.storage.settings.GCS_CREDENTIALS_JSON, key);
    assert.ok(config.secrets.includes(key), 'the key is scrubbed from anything that leaves the process');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('gcs failures are classified by HTTP status, network code and credentials message', () => {
  const cases: [unknown, string][] = [
    [{ code: 403, message: 'Forbidden' }, 'denied'],
    [{ response: { status: 401 } }, 'denied'],
    [new Error('Could not load the default credentials.'), 'denied'],
    [{ code: 503 }, 'unavailable'],
    [new Error('Retry limit exceeded - status: 503'), 'unavailable'],
    [{ code: 429 }, 'unavailable'],
    [Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'unavailable'],
    [Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }), 'unavailable'],
    [{ code: 412 }, 'other'],
    [new Error('boom'), 'other'],
  ];
  for (const [error, kind] of cases) assert.equal(gcs.classify(error), kind, JSON.stringify(error));
});
