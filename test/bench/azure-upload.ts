// Benchmark (not a test): a synthetic dump into an in-memory azurite at default settings, the azure
// target alone and the bundled job, each measured for throughput and peak RSS
// (test/bench/upload-harness.ts).
//
//   node_modules/.bin/node test/bench/azure-upload.ts [--mode target|job|both] [--size 2GiB] [--chunk 64KiB]
//                          [--size-hint 1TiB] [--part-size 8MiB] [--concurrency 5]
//
// Without options: both modes, 2 GiB, the defaults (8 MiB blocks × 2); the target mode's stream comes
// in 64 KiB chunks, about what a pipe from a child process hands on.
import { azure, AZURE_BLOCKS } from '../../src/storage/azure.ts';
import { planParts } from '../../src/storage/parts.ts';
import { formatBytes, parseSize } from '../../src/units.ts';
import { DEV_ACCOUNT, DEV_KEY, startAzurite } from '../support/azurite.ts';
import { BENCH_BUCKET, runUploadBench } from './upload-harness.ts';

await runUploadBench({
  type: 'azure',
  driver: azure,
  flags: ['size-hint', 'concurrency'],
  settings: ({ sizeHint, vars }) => {
    const plan = planParts(AZURE_BLOCKS, sizeHint, {
      partSize: vars.STORAGE_PART_SIZE === undefined ? undefined : parseSize(vars.STORAGE_PART_SIZE),
      concurrency: vars.STORAGE_CONCURRENCY === undefined ? undefined : Number(vars.STORAGE_CONCURRENCY),
    });
    return { blockSize: formatBytes(plan.partSize), concurrency: plan.concurrency, predictedBuffers: formatBytes(plan.bufferBytes) };
  },
  start: async () => {
    const azurite = await startAzurite({ inMemory: true });
    const container = azurite.service.getContainerClient(await azurite.createContainer(BENCH_BUCKET));
    return {
      endpoint: azurite.endpoint,
      bucket: BENCH_BUCKET,
      env: { AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY },
      objects: async (prefix) => {
        const objects = [];
        for await (const blob of container.listBlobsFlat({ prefix })) objects.push({ key: blob.name, size: blob.properties.contentLength ?? 0 });
        return objects;
      },
      stop: () => azurite.stop(),
    };
  },
});
