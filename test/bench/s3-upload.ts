// Benchmark (not a test): a synthetic dump into s3rver at default settings, the s3 target alone and
// the bundled job, each measured for throughput and peak RSS (test/bench/upload-harness.ts).
//
//   node_modules/.bin/node test/bench/s3-upload.ts [--mode target|job|both] [--size 2GiB] [--chunk 64KiB]
//                          [--size-hint 50GiB] [--part-size 8MiB] [--concurrency 2]
//
// Without options: both modes, 2 GiB, the defaults (no size hint: 8 MiB parts × 2); the target mode's
// stream comes in 64 KiB chunks of incompressible bytes, about what a pipe from zstd hands on.
// s3rver runs in this (parent) process and is reached directly, without the tests' fault front.
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { planParts } from '../../src/storage/parts.ts';
import { s3, S3_PARTS } from '../../src/storage/s3.ts';
import { formatBytes, parseSize } from '../../src/units.ts';
import { startS3Server } from '../support/s3-server.ts';
import { BENCH_BUCKET, runUploadBench } from './upload-harness.ts';

await runUploadBench({
  type: 's3',
  driver: s3,
  flags: ['size-hint', 'concurrency'],
  settings: ({ sizeHint, vars }) => {
    const plan = planParts(S3_PARTS, sizeHint, {
      partSize: vars.STORAGE_PART_SIZE === undefined ? undefined : parseSize(vars.STORAGE_PART_SIZE),
      concurrency: vars.STORAGE_CONCURRENCY === undefined ? undefined : Number(vars.STORAGE_CONCURRENCY),
    });
    return {
      partSize: formatBytes(plan.partSize),
      concurrency: plan.concurrency,
      capacity: formatBytes(plan.capacity),
      partBuffers: formatBytes(plan.bufferBytes),
    };
  },
  start: async () => {
    const server = await startS3Server({ buckets: [BENCH_BUCKET] });
    return {
      endpoint: server.directEndpoint,
      bucket: BENCH_BUCKET,
      env: { STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey },
      objects: async (prefix) => {
        const listing = await server.client.send(new ListObjectsV2Command({ Bucket: BENCH_BUCKET, Prefix: prefix }));
        return (listing.Contents ?? []).map((object) => ({ key: object.Key ?? '', size: object.Size ?? 0 }));
      },
      stop: () => server.stop(),
    };
  },
});
