// STORAGE_TYPE=azure against a throw-away azurite: the shared contract suite, then what is specific to
// Azure (uncommitted blocks never become a blob, credentials, classification, tiers, metadata). The
// rules that need no server are in test/unit/storage/azure.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { StorageError } from '../../../src/errors.ts';
import { azure } from '../../../src/storage/azure.ts';
import type { CommonStorageSettings, StorageTarget } from '../../../src/storage/types.ts';
import { azuriteMissing, startAzurite, DEV_ACCOUNT, DEV_KEY, type Azurite } from '../../support/azurite.ts';
import { startRecordingProxy } from '../../support/recording-proxy.ts';
import { settingsFrom } from '../../support/storage-settings.ts';
import { body, patternBytes, sha256, storageContract, uploadRequest as request } from '../storage-contract.ts';

const MiB = 1024 * 1024;
// Small blocks so that a few MiB make several of them.
const BLOCK = 1 * MiB;

function common(bucket: string, endpoint?: string): CommonStorageSettings {
  return { bucket, endpoint, region: undefined };
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

describe('azure against azurite', { skip: azuriteMissing() }, () => {
  let azurite: Azurite;
  let container: ContainerClient;
  let target: StorageTarget;
  const bucket = `planb-${randomBytes(4).toString('hex')}`;

  before(async () => {
    azurite = await startAzurite();
    await azurite.createContainer(bucket);
    container = azurite.service.getContainerClient(bucket);
    target = azure.open(common(bucket, azurite.endpoint), settingsFrom(azure, {
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
      const viaProxy = azure.open(common(bucket, proxy.url), settingsFrom(azure, { AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB' }));
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
    const wrong = azure.open(common(bucket, azurite.endpoint), settingsFrom(azure, {
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
    const missing = azure.open(common('no-such-container', azurite.endpoint), settingsFrom(azure, { AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY }));
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
    const sasTarget = azure.open(common(bucket, azurite.endpoint), settingsFrom(azure, { AZURE_STORAGE_SAS_TOKEN: `?${sas}`, STORAGE_PART_SIZE: '1MiB' }));
    const data = patternBytes(2 * BLOCK + 17, 5);
    const stored = await sasTarget.upload(request('db/sas.dump', body(data)));
    assert.ok(!stored.url.includes('sig='), stored.url);
    const back = await download(container, 'db/sas.dump');
    assert.equal(back && sha256(back), sha256(data));
  });

  test('a connection string works the way the Azure CLI reads it', async () => {
    const fromString = azure.open(common(bucket), settingsFrom(azure, { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString }));
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
      target: azure.open(common(bucket, azurite.endpoint), settingsFrom(azure, { AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB' })),
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
