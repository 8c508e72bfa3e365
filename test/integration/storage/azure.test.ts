// STORAGE_TYPE=azure against a throw-away azurite: the shared contract suite, then what is specific to
// Azure (uncommitted blocks never become a blob, credentials, classification, tiers, metadata), and the
// pure block-sizing and metadata rules.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { cleanEnv } from 'envalid';
import { pino } from 'pino';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError, StorageError } from '../../../src/errors.ts';
import {
  azure,
  azureMetadata,
  classifyAzureError,
  DEFAULT_BLOCK_SIZE,
  MAX_BLOB_SIZE,
  MAX_BLOCK_SIZE,
  MAX_BLOCKS,
  planBlocks,
} from '../../../src/storage/azure.ts';
import type { CommonStorageSettings, StorageTarget, UploadRequest } from '../../../src/storage/types.ts';
import { azuriteMissing, startAzurite, DEV_ACCOUNT, DEV_KEY, type Azurite } from '../../support/azurite.ts';
import { startRecordingProxy } from '../../support/recording-proxy.ts';
import { body, patternBytes, storageContract } from '../storage-contract.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// Small blocks so that a few MiB make several of them.
const BLOCK = 1 * MiB;
const log = pino({ level: 'silent' });
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

// The driver's variables as config.ts would clean them; a bad value throws instead of exiting.
function settingsFrom(vars: Record<string, string>): Record<string, unknown> {
  return cleanEnv(vars, azure.env, {
    reporter: ({ errors }) => {
      if (Object.keys(errors).length > 0) throw new Error(Object.keys(errors).join(', '));
    },
  });
}

function common(bucket: string, endpoint?: string): CommonStorageSettings {
  return { bucket, endpoint, region: undefined };
}

function request(key: string, data: Readable, overrides: Partial<UploadRequest> = {}): UploadRequest {
  return {
    key,
    body: data,
    signal: new AbortController().signal,
    contentType: 'application/zstd',
    metadata: { 'planb-run-id': '20261122T043300Z-3f9a1c2e', 'planb-db-type': 'postgresql' },
    sizeHint: undefined,
    log,
    ...overrides,
  };
}

// A look at the store never waits forever, even when a broken target left it in a strange state.
const LOOK_TIMEOUT_MS = 10_000;

// The blob's bytes via the SDK, or undefined when there is no blob at the key.
async function download(container: ContainerClient, key: string): Promise<Buffer | undefined> {
  try {
    return await container.getBlockBlobClient(key).downloadToBuffer(0, undefined, { abortSignal: AbortSignal.timeout(LOOK_TIMEOUT_MS) });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw error;
  }
}

async function committedNames(container: ContainerClient, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of container.listBlobsFlat({ prefix, abortSignal: AbortSignal.timeout(LOOK_TIMEOUT_MS) })) names.push(item.name);
  return names;
}

describe('azure block sizing', () => {
  test('the defaults carry 390 GiB of unknown size in 24 MiB of buffers', () => {
    const plan = planBlocks(undefined);
    assert.equal(plan.blockSize, 8 * MiB);
    assert.equal(plan.concurrency, 2);
    assert.equal(plan.maxBlobSize, 50_000 * 8 * MiB);
    assert.ok(plan.maxBlobSize > 390 * GiB);
    assert.equal(plan.bufferBytes, 24 * MiB);
  });

  test('a 50 GiB dump keeps the default blocks, and so the default memory', () => {
    assert.equal(planBlocks(50 * GiB).blockSize, DEFAULT_BLOCK_SIZE);
    assert.ok(planBlocks(undefined).maxBlobSize >= 2 * 50 * GiB, 'no dump up to 50 GiB can fail on the block count');
  });

  test('a size hint raises the block size so that twice the hint fits in 50,000 blocks', () => {
    for (const hint of [200 * GiB, 1 * TiB, 5 * TiB, 50 * TiB]) {
      const plan = planBlocks(hint);
      assert.ok(plan.maxBlobSize >= 2 * hint, `${hint}: ${plan.maxBlobSize}`);
      assert.equal(plan.blockSize % MiB, 0, 'whole MiB');
      assert.ok(plan.blockSize - MiB < (2 * hint) / MAX_BLOCKS, 'no bigger than needed');
    }
    assert.equal(planBlocks(1 * TiB).blockSize, 42 * MiB);
    assert.equal(planBlocks(5 * TiB).blockSize, 210 * MiB);
  });

  test('memory follows the block size: (concurrency + 1) blocks', () => {
    assert.equal(planBlocks(1 * TiB).bufferBytes, 3 * 42 * MiB);
    assert.equal(planBlocks(5 * TiB).bufferBytes, 3 * 210 * MiB);
    assert.equal(planBlocks(1 * TiB, undefined, 5).bufferBytes, 6 * 42 * MiB);
  });

  test('the block size stops at Azure limit of 4000 MiB, which is a 190.7 TiB blob', () => {
    const plan = planBlocks(150 * TiB);
    assert.equal(plan.blockSize, MAX_BLOCK_SIZE);
    assert.equal(plan.maxBlobSize, MAX_BLOB_SIZE);
    assert.equal(MAX_BLOB_SIZE, 50_000 * 4000 * MiB);
  });

  test('a configured block size and concurrency are kept unless the hint needs bigger blocks', () => {
    assert.deepEqual(planBlocks(undefined, 16 * MiB, 2), { blockSize: 16 * MiB, concurrency: 2, maxBlobSize: 50_000 * 16 * MiB, bufferBytes: 48 * MiB });
    assert.equal(planBlocks(1 * GiB, 1 * MiB).blockSize, 1 * MiB);
    assert.equal(planBlocks(1 * TiB, 1 * MiB).blockSize, 42 * MiB);
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
    for (const [error, kind] of cases) assert.equal(classifyAzureError(error), kind, JSON.stringify(error));
  });
});

describe('azure configuration', () => {
  const open = (vars: Record<string, string>, bucket = 'backups', endpoint?: string) => azure.open(common(bucket, endpoint), settingsFrom(vars));

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
    assert.throws(() => settingsFrom({ STORAGE_PART_SIZE: '100KiB' }), /STORAGE_PART_SIZE/);
    assert.throws(() => settingsFrom({ STORAGE_PART_SIZE: '5GiB' }), /STORAGE_PART_SIZE/);
    assert.throws(() => settingsFrom({ STORAGE_CONCURRENCY: '0' }), /STORAGE_CONCURRENCY/);
    assert.throws(() => settingsFrom({ STORAGE_ACCESS_TIER: 'Glacier' }), /STORAGE_ACCESS_TIER/);
    assert.throws(() => settingsFrom({ AZURE_STORAGE_ACCOUNT: 'Not_An_Account' }), /AZURE_STORAGE_ACCOUNT/);
    assert.equal(settingsFrom({ STORAGE_ACCESS_TIER: 'cool' }).STORAGE_ACCESS_TIER, 'Cool');
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

describe('azure against azurite', { skip: azuriteMissing() }, () => {
  let azurite: Azurite;
  let container: ContainerClient;
  let target: StorageTarget;
  const bucket = `planb-${randomBytes(4).toString('hex')}`;

  before(async () => {
    azurite = await startAzurite();
    await azurite.createContainer(bucket);
    container = azurite.service.getContainerClient(bucket);
    target = azure.open(common(bucket, azurite.endpoint), settingsFrom({
      AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB', STORAGE_ACCESS_TIER: 'Cool',
    }));
  });
  after(async () => {
    await azurite?.stop();
  });

  test('a stream of several blocks round-trips byte-identical, with type, tier and metadata', async () => {
    const data = patternBytes(5 * BLOCK + 54_321, 42);
    const stored = await target.upload(request('db/several-blocks.dump.zst', body(data, { chunk: 100_000 })));
    assert.equal(stored.url, `${azurite.endpoint}/${bucket}/db/several-blocks.dump.zst`);
    const blob = container.getBlockBlobClient('db/several-blocks.dump.zst');
    const blocks = await blob.getBlockList('committed');
    assert.equal(blocks.committedBlocks?.length, 6, 'five full blocks and a short one');
    const back = await download(container, 'db/several-blocks.dump.zst');
    assert.ok(back);
    assert.equal(sha256(back), sha256(data));
    const properties = await blob.getProperties();
    assert.equal(properties.contentType, 'application/zstd');
    assert.equal(properties.accessTier, 'Cool');
    assert.deepEqual(properties.metadata, { planb_run_id: '20261122T043300Z-3f9a1c2e', planb_db_type: 'postgresql' });
  });

  test('metadata known only at the end of the body (the SHA-256) is committed with the blob', async () => {
    const data = patternBytes(2 * BLOCK + 777, 5);
    let ended = false;
    const source = body(data, { chunk: 100_000 });
    source.once('end', () => {
      ended = true;
    });
    const late = () => {
      assert.ok(ended, 'asked only once the body has ended');
      return { 'planb-sha256': sha256(data) };
    };
    await target.upload(request('db/late-metadata.dump.zst', source, { lateMetadata: late }));
    const properties = await container.getBlockBlobClient('db/late-metadata.dump.zst').getProperties();
    assert.equal(properties.metadata?.planb_sha256, sha256(data));
    assert.equal(properties.metadata?.planb_run_id, '20261122T043300Z-3f9a1c2e');
  });

  test('a body that fails after blocks were staged leaves no blob and rejects with the body error', async () => {
    const failure = new Error('pg_dump exited with code 1 mid-stream');
    const key = 'db/failed-mid-stream.dump';
    const data = patternBytes(3 * BLOCK + 1000, 9);
    const staged = async () => ((await container.getBlockBlobClient(key).getBlockList('uncommitted')).uncommittedBlocks?.length ?? 0);
    const failing = Readable.from((async function* () {
      yield data;
      // The dump dies only once the SDK has staged a block, however long that takes on a busy machine.
      const deadline = Date.now() + LOOK_TIMEOUT_MS;
      while ((await staged().catch(() => 0)) === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      throw failure;
    })());
    await assert.rejects(target.upload(request(key, failing)), (error) => {
      assert.equal(error, failure, 'the body error itself, not a storage error');
      return true;
    });
    const blob = container.getBlockBlobClient(key);
    // Blocks were staged (so the commit is what was withheld) ...
    const list = await blob.getBlockList('uncommitted');
    assert.ok((list.uncommittedBlocks?.length ?? 0) >= 1, 'at least one block was staged before the failure');
    // ... yet no blob exists.
    await assert.rejects(blob.getProperties(), (error: { statusCode?: number }) => error.statusCode === 404);
    assert.deepEqual(await committedNames(container, key), []);
  });

  test('an abort mid-upload settles within seconds with the abort reason and leaves nothing', async () => {
    const controller = new AbortController();
    const key = 'db/aborted.dump';
    const chunk = patternBytes(256 * 1024, 3);
    const endless = Readable.from((async function* () {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        yield chunk;
      }
    })());
    const upload = target.upload(request(key, endless, { signal: controller.signal }));
    await new Promise((resolve) => setTimeout(resolve, 800));
    const reason = new Error('interrupted by SIGTERM');
    const started = Date.now();
    controller.abort(reason);
    await assert.rejects(upload, (error) => error === reason);
    // Tens of ms when it works; the bound is the 8 s main.ts allows after SIGTERM.
    assert.ok(Date.now() - started < 8_000, `settled in ${Date.now() - started} ms`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await download(container, key))?.length, undefined);
    assert.deepEqual(await committedNames(container, key), []);
  });

  test('an abort that lands while the commit is on the wire still leaves no blob', async () => {
    const key = 'db/aborted-during-commit.dump';
    const controller = new AbortController();
    const reason = new Error('interrupted by SIGTERM');
    const proxy = await startRecordingProxy(azurite.endpoint);
    proxy.intercept({ match: (r) => r.method === 'PUT' && r.query.get('comp') === 'blocklist', onRequest: () => controller.abort(reason), delayMs: 300 });
    try {
      const viaProxy = azure.open(common(bucket, proxy.url), settingsFrom({ AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB' }));
      const started = Date.now();
      await assert.rejects(viaProxy.upload(request(key, body(patternBytes(2 * BLOCK + 99, 4)), { signal: controller.signal })), (error) => error === reason);
      assert.ok(Date.now() - started < 8000, `settled in ${Date.now() - started} ms`);
    } finally {
      await proxy.stop();
    }
    assert.ok(controller.signal.aborted, 'the commit was reached');
    assert.equal((await download(container, key))?.length, undefined, 'the blob the commit created was deleted');
    assert.deepEqual(await committedNames(container, key), []);
  });

  test('an existing blob is never overwritten', async () => {
    const key = 'db/exists.dump';
    const first = patternBytes(3 * BLOCK, 1);
    await target.upload(request(key, body(first)));
    await assert.rejects(target.upload(request(key, body(patternBytes(2 * BLOCK + 5, 2)))), (error) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.kind, 'other');
      assert.match(error.message, /refusing to overwrite/);
      return true;
    });
    const back = await download(container, key);
    assert.equal(back && sha256(back), sha256(first));
  });

  test('a wrong account key is classified as denied', async () => {
    const wrong = azure.open(common(bucket, azurite.endpoint), settingsFrom({
      AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: Buffer.from(randomBytes(64)).toString('base64'),
    }));
    await assert.rejects(wrong.upload(request('db/wrong-key.dump', body(patternBytes(1000)))), (error) => {
      assert.ok(error instanceof StorageError, String(error));
      assert.equal(error.kind, 'denied');
      return true;
    });
    assert.deepEqual(await committedNames(container, 'db/wrong-key'), []);
  });

  test('a missing container is classified as denied', async () => {
    const missing = azure.open(common('no-such-container', azurite.endpoint), settingsFrom({ AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY }));
    await assert.rejects(missing.upload(request('db/x.dump', body(patternBytes(2 * BLOCK)))), (error) => {
      assert.ok(error instanceof StorageError, String(error));
      assert.equal(error.kind, 'denied');
      assert.match(error.message, /no-such-container/);
      return true;
    });
  });

  test('a container SAS with only create and write is enough, and the SAS stays out of the URL', async () => {
    const sas = generateBlobSASQueryParameters(
      { containerName: bucket, permissions: ContainerSASPermissions.parse('cw'), expiresOn: new Date(Date.now() + 3_600_000) },
      new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY),
    ).toString();
    const sasTarget = azure.open(common(bucket, azurite.endpoint), settingsFrom({ AZURE_STORAGE_SAS_TOKEN: `?${sas}`, STORAGE_PART_SIZE: '1MiB' }));
    const data = patternBytes(2 * BLOCK + 17, 5);
    const stored = await sasTarget.upload(request('db/sas.dump', body(data)));
    assert.ok(!stored.url.includes('sig='), stored.url);
    const back = await download(container, 'db/sas.dump');
    assert.equal(back && sha256(back), sha256(data));
  });

  test('a connection string works the way the Azure CLI reads it', async () => {
    const fromString = azure.open(common(bucket), settingsFrom({ AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString }));
    const data = patternBytes(12_345, 8);
    await fromString.upload(request('db/connection-string.dump', body(data)));
    const back = await download(container, 'db/connection-string.dump');
    assert.equal(back && sha256(back), sha256(data));
  });
});

const missing = azuriteMissing();
if (missing) test('azure storage contract', { skip: missing }, () => {});
else storageContract('azure', async () => {
  const azurite = await startAzurite();
  try {
    const bucket = await azurite.createContainer(`contract-${randomBytes(4).toString('hex')}`);
    const container = azurite.service.getContainerClient(bucket);
    return {
      target: azure.open(common(bucket, azurite.endpoint), settingsFrom({ AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB' })),
      partSize: BLOCK,
      read: (key) => download(container, key),
      // Committed blobs only: uncommitted blocks are not an object, and Azure discards them after a week.
      list: (prefix) => committedNames(container, prefix),
      teardown: () => azurite.stop(),
    };
  } catch (error) {
    await azurite.stop();
    throw error;
  }
});
