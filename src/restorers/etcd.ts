// DB_TYPE=etcd: a snapshot is restored into a new member's data directory, never into a running
// member: `etcdutl snapshot restore` (etcd 3.4: `etcdctl snapshot restore`) reads the file, checks
// the SHA-256 it ends with, and writes RESTORE_DATA_DIR, which must not exist yet. An etcd started
// on that directory serves the keyspace. Counts are the keys of the whole keyspace.
import { etcdctl } from '../engines/etcd.ts';
import { DumpError } from '../errors.ts';
import { requireTool } from './tools.ts';
import type { Counts, Restorer } from './types.ts';

// `get "" --prefix --keys-only --limit=1 --write-out=json`: the header's `count` is every key.
export function parseKeyCount(stdout: string): Counts {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new DumpError(`could not read etcdctl's key count: ${stdout.slice(0, 200)}`, { kind: 'failed', stage: 'restore' });
  }
  // An empty keyspace answers without a count.
  const count = (parsed as { count?: unknown }).count ?? 0;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) throw new DumpError('etcdctl gave no key count', { kind: 'failed', stage: 'restore' });
  return { keys: count };
}

export const etcd = {
  formats: ['snapshot'],
  input: 'file',
  tools: () => ['etcdutl', 'etcdctl'],

  command(db, { tool, dumpFile, into }) {
    // DB_EXTRA_ARGS go to the restore (--name, --initial-cluster, … for a member of several).
    return { file: tool, args: ['snapshot', 'restore', dumpFile ?? '', `--data-dir=${into ?? ''}`, ...db.extraArgs], env: { ETCDCTL_API: '3' }, files: [] };
  },

  async count(db, { path, query }) {
    const tool = requireTool(['etcdctl'], path, 'count the keys of an etcd member');
    return parseKeyCount(await query(etcdctl(db, tool, ['get', '', '--prefix', '--keys-only', '--limit=1', '--write-out=json'])));
  },
} satisfies Restorer;
