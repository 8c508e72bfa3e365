import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { local } from '../../../src/storage/local.ts';
import { storageContract } from '../storage-contract.ts';

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

storageContract('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'planb-local-'));
  return {
    target: local.open({ bucket: root, endpoint: undefined, region: undefined }),
    partSize: 256 * 1024,
    read: (key) => readFile(join(root, key)).catch(() => undefined),
    list: async (prefix) => (await walk(join(root, prefix))).map((file) => relative(root, file)),
    teardown: () => rm(root, { recursive: true, force: true }),
  };
});
