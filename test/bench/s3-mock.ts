// The benchmark's S3 endpoint, in a process of its own so that its work neither stalls the
// benchmark's /proc sampler nor hides inside the measured process tree: s3rver from
// test/support/s3-server.ts with one bucket. Prints {"endpoint": …} on stdout once it listens and
// stops when its stdin closes (the benchmark ended or died).
import { startS3Server } from '../support/s3-server.ts';

const bucket = process.argv[2] ?? 'bench';
const server = await startS3Server({ buckets: [bucket] });
// The direct endpoint: the test front's request log would grow by one entry per 8 MiB part forever.
process.stdout.write(`${JSON.stringify({ endpoint: server.directEndpoint, region: server.region, credentials: server.credentials })}\n`);
process.stdin.resume();
await new Promise((resolve) => process.stdin.once('close', resolve));
await server.stop();
