// STORAGE_TYPE=azure without a server: block sizing, metadata rules, failure classification, and the
// credentials and settings a target opens with.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError, StorageError } from '../../../src/errors.ts';
import { azure, AZURE_BLOCKS, azureMetadata, DEFAULT_BLOCK_SIZE, MAX_BLOB_SIZE, MAX_BLOCK_SIZE, MAX_BLOCKS } from '../../../src/storage/azure.ts';
import { planParts } from '../../../src/storage/parts.ts';
import type { CommonStorageSettings } from '../../../src/storage/types.ts';
import { DEV_KEY } from '../../support/azurite.ts';
import { settingsFrom } from '../../support/storage-settings.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

// Azure's plan for a hint, a configured block size and concurrency.
const azurePlan = (sizeHint: number | undefined, partSize?: number, concurrency?: number) => planParts(AZURE_BLOCKS, sizeHint, { partSize, concurrency });

function common(bucket: string, endpoint?: string): CommonStorageSettings {
  return { bucket, endpoint, region: undefined };
}

describe('azure block sizing', () => {
  test('the defaults carry 390 GiB of unknown size in 24 MiB of buffers', () => {
    const plan = azurePlan(undefined);
    assert.equal(plan.partSize, 8 * MiB);
    assert.equal(plan.concurrency, 2);
    assert.equal(plan.capacity, 50_000 * 8 * MiB);
    assert.ok(plan.capacity > 390 * GiB);
    assert.equal(plan.bufferBytes, 24 * MiB);
  });

  test('a 50 GiB dump keeps the default blocks, and so the default memory', () => {
    assert.equal(azurePlan(50 * GiB).partSize, DEFAULT_BLOCK_SIZE);
    assert.ok(azurePlan(undefined).capacity >= 2 * 50 * GiB, 'no dump up to 50 GiB can fail on the block count');
  });

  test('a size hint raises the block size so that twice the hint fits in 50,000 blocks', () => {
    for (const hint of [200 * GiB, 1 * TiB, 5 * TiB, 50 * TiB]) {
      const plan = azurePlan(hint);
      assert.ok(plan.capacity >= 2 * hint, `${hint}: ${plan.capacity}`);
      assert.equal(plan.partSize % MiB, 0, 'whole MiB');
      assert.ok(plan.partSize - MiB < (2 * hint) / MAX_BLOCKS, 'no bigger than needed');
    }
    assert.equal(azurePlan(1 * TiB).partSize, 42 * MiB);
    assert.equal(azurePlan(5 * TiB).partSize, 210 * MiB);
  });

  test('memory follows the block size: (concurrency + 1) blocks', () => {
    assert.equal(azurePlan(1 * TiB).bufferBytes, 3 * 42 * MiB);
    assert.equal(azurePlan(5 * TiB).bufferBytes, 3 * 210 * MiB);
    assert.equal(azurePlan(1 * TiB, undefined, 5).bufferBytes, 6 * 42 * MiB);
  });

  test('the block size stops at Azure limit of 4000 MiB, which is a 190.7 TiB blob', () => {
    const plan = azurePlan(150 * TiB);
    assert.equal(plan.partSize, MAX_BLOCK_SIZE);
    assert.equal(plan.capacity, MAX_BLOB_SIZE);
    assert.equal(MAX_BLOB_SIZE, 50_000 * 4000 * MiB);
  });

  test('a configured block size and concurrency are kept unless the hint needs bigger blocks', () => {
    assert.deepEqual(azurePlan(undefined, 16 * MiB, 2), { partSize: 16 * MiB, concurrency: 2, capacity: 50_000 * 16 * MiB, bufferBytes: 48 * MiB });
    assert.equal(azurePlan(1 * GiB, 1 * MiB).partSize, 1 * MiB);
    assert.equal(azurePlan(1 * TiB, 1 * MiB).partSize, 42 * MiB);
  });
});

describe('azure metadata and errors', () => {
  test('metadata names become C# identifiers and values stay ASCII', () => {
    assert.deepEqual(azureMetadata({ 'planb-run-id': 'r1', '9lives': 'x', 'db.type': 'pg', note: 'café' }), {
      planb_run_id: 'r1',
      _9lives: 'x',
      db_type: 'pg',
      note: 'caf%C3%A9',
    });
  });

  test('metadata names that collide after mapping are refused', () => {
    assert.throws(() => azureMetadata({ 'a-b': '1', a_b: '2' }), StorageError);
    assert.throws(() => azureMetadata({ Key: '1', key: '2' }), StorageError);
  });

  test('metadata larger than 8 KiB is refused', () => {
    assert.throws(() => azureMetadata({ big: 'x'.repeat(9000) }), /8192/);
  });

  test('failures are classified as denied, unavailable or other', () => {
    const cases: [unknown, string][] = [
      [{ statusCode: 403, code: 'AuthenticationFailed' }, 'denied'],
      [{ statusCode: 403, code: 'AuthorizationPermissionMismatch' }, 'denied'],
      [{ statusCode: 404, code: 'ContainerNotFound' }, 'denied'],
      [{ statusCode: 401 }, 'denied'],
      [{ name: 'CredentialUnavailableError' }, 'denied'],
      [{ name: 'AuthenticationError', statusCode: 400 }, 'denied'],
      [{ name: 'AuthenticationError', statusCode: 503 }, 'unavailable'],
      [{ statusCode: 503, code: 'ServerBusy' }, 'unavailable'],
      [{ statusCode: 500, code: 'InternalError' }, 'unavailable'],
      [{ statusCode: 429 }, 'unavailable'],
      [{ code: 'ECONNREFUSED' }, 'unavailable'],
      [{ code: 'REQUEST_SEND_ERROR' }, 'unavailable'],
      [{ statusCode: 409, code: 'BlobAlreadyExists' }, 'other'],
      [{ statusCode: 400, code: 'InvalidBlockList' }, 'other'],
      [new Error('boom'), 'other'],
    ];
    for (const [error, kind] of cases) assert.equal(azure.classify(error), kind, JSON.stringify(error));
  });
});

describe('azure configuration', () => {
  const open = (vars: Record<string, string>, bucket = 'backups', endpoint?: string) => azure.open(common(bucket, endpoint), settingsFrom(azure, vars));

  test('account and key, SAS, workload identity and connection string each open a target', () => {
    assert.ok(open({ AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_KEY: 'a2V5' }));
    assert.ok(open({ AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_SAS_TOKEN: '?sv=2025-01-01&sig=x' }));
    assert.ok(open({ AZURE_STORAGE_ACCOUNT: 'acct1' }), 'DefaultAzureCredential given the account');
    assert.ok(open({}, 'backups', 'https://acct1.blob.core.windows.net'), 'DefaultAzureCredential given the endpoint');
    assert.ok(open({ AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' }));
  });

  test('conflicting or missing credentials are a ConfigError naming the variables', () => {
    const problems = (vars: Record<string, string>, bucket = 'backups', endpoint?: string) => {
      try {
        open(vars, bucket, endpoint);
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        return error.problems.join('\n');
      }
      assert.fail('expected a ConfigError');
    };
    assert.match(problems({}), /AZURE_STORAGE_ACCOUNT or STORAGE_ENDPOINT/);
    assert.match(problems({ AZURE_STORAGE_KEY: 'a2V5' }, 'backups', 'https://x.blob.core.windows.net'), /needs AZURE_STORAGE_ACCOUNT/);
    assert.match(problems({ AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_KEY: 'a2V5', AZURE_STORAGE_SAS_TOKEN: 'sig=x' }), /only one/);
    assert.match(problems({ AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true', AZURE_STORAGE_KEY: 'a2V5' }), /unset AZURE_STORAGE_KEY/);
    assert.match(problems({ AZURE_STORAGE_ACCOUNT: 'acct1' }, 'Bad_Container'), /STORAGE_BUCKET/);
    const incomplete = problems({ AZURE_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=https;AccountName=acct1;EndpointSuffix=core.windows.net' });
    assert.match(incomplete, /AZURE_STORAGE_CONNECTION_STRING: needs AccountName and AccountKey/);
  });

  test('bad block size, concurrency, tier and account values are refused by the validators', () => {
    assert.throws(() => settingsFrom(azure, { STORAGE_PART_SIZE: '100KiB' }), /STORAGE_PART_SIZE/);
    assert.throws(() => settingsFrom(azure, { STORAGE_PART_SIZE: '5GiB' }), /STORAGE_PART_SIZE/);
    assert.throws(() => settingsFrom(azure, { STORAGE_CONCURRENCY: '0' }), /STORAGE_CONCURRENCY/);
    assert.throws(() => settingsFrom(azure, { STORAGE_ACCESS_TIER: 'Glacier' }), /STORAGE_ACCESS_TIER/);
    assert.throws(() => settingsFrom(azure, { AZURE_STORAGE_ACCOUNT: 'Not_An_Account' }), /AZURE_STORAGE_ACCOUNT/);
    assert.equal(settingsFrom(azure, { STORAGE_ACCESS_TIER: 'cool' }).STORAGE_ACCESS_TIER, 'Cool');
  });

  test('the account key can come from AZURE_STORAGE_KEY_FILE and is scrubbed as a secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'planb-azure-config-'));
    try {
      await writeFile(join(dir, 'key'), `${DEV_KEY}\n`, { mode: 0o600 });
      const config = loadConfig({
        DB_TYPE: 'postgresql', DB_HOST: 'db', DB_NAME: 'shop',
        STORAGE_TYPE: 'azure', STORAGE_BUCKET: 'backups',
        AZURE_STORAGE_ACCOUNT: 'acct1', AZURE_STORAGE_KEY_FILE: join(dir, 'key'),
      });
      assert.equal(config.storage.settings.AZURE_STORAGE_KEY, DEV_KEY);
      assert.ok(config.secrets.includes(DEV_KEY));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

