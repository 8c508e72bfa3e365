// Benchmark (not a test): a synthetic dump into the strict GCS stand-in (test/support/gcs-server.ts),
// the gcs target alone and the bundled job, each measured for throughput and peak RSS
// (test/bench/upload-harness.ts).
//
//   node_modules/.bin/node test/bench/gcs-upload.ts [--mode target|job|both] [--size 2GiB] [--chunk 64KiB]
//                          [--part-size 8MiB] [--verify]
//
// Without options: both modes, 2 GiB, default settings (one streaming request, no chunk size); the
// target mode's stream comes in 64 KiB chunks of incompressible bytes, about what a pipe from zstd
// hands on. The server runs in this (parent) process, keeps no data and computes no checksums, so
// that the child's work is what is measured; --verify makes it hash (SHA-256 compared with the
// child's, at the cost of the parent's CPU on a 2-core machine).
import { gcs } from '../../src/storage/gcs.ts';
import { startGcsServer } from '../support/gcs-server.ts';
import { BENCH_BUCKET, runUploadBench } from './upload-harness.ts';

await runUploadBench({
  type: 'gcs',
  driver: gcs,
  flags: ['verify'],
  settings: ({ vars }) => ({ chunkSize: vars.STORAGE_PART_SIZE ?? 'none (one streaming request)' }),
  start: async ({ verify }) => {
    const server = await startGcsServer({ buckets: [BENCH_BUCKET], keepData: false, hashes: verify, crc32c: false });
    return {
      endpoint: server.url,
      bucket: BENCH_BUCKET,
      env: {},
      objects: (prefix) => {
        if (server.openSessions().length > 0) return Promise.reject(new Error('an upload session was left open'));
        const objects = server.objects(BENCH_BUCKET).filter((object) => object.name.startsWith(prefix));
        return Promise.resolve(objects.map((object) => ({ key: object.name, size: object.size, sha256: object.sha256 })));
      },
      stop: () => server.close(),
    };
  },
});
