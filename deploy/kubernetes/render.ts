// Writes the Kubernetes podFailurePolicy of deploy/kubernetes/cronjob.yaml from the exit-code table
// (src/exit-codes.ts), so that the scheduler's reaction to each code cannot drift from the table.
//
//   node deploy/kubernetes/render.ts           rewrite the policy in place
//   node deploy/kubernetes/render.ts --check   exit 1 when the committed file differs from the generated one
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isMap, isSeq, parseDocument, visit } from 'yaml';
import { EXIT_CODES, type Retry } from '../../src/exit-codes.ts';

export const CRONJOB_PATH = join(resolve(import.meta.dirname, '../..'), 'deploy/kubernetes/cronjob.yaml');
// The Indexed Job option (DB_NAMES split over tasks): a patch of the CronJob with its own policy.
export const INDEXED_PATCH_PATH = join(resolve(import.meta.dirname, '../..'), 'deploy/kubernetes/indexed/indexed-job.yaml');
// The container the exit codes are read from (the only one in the pod).
export const CONTAINER_NAME = 'backup';
// Where the policy sits in a CronJob.
const POLICY_PATH = ['spec', 'jobTemplate', 'spec', 'podFailurePolicy'] as const;

// One rule of a Kubernetes Job's podFailurePolicy (batch/v1).
export type PodFailurePolicyRule =
  | { action: 'Ignore'; onPodConditions: { type: string; status: 'True' }[] }
  | { action: 'FailJob' | 'FailIndex' | 'Count'; onExitCodes: { containerName: string; operator: 'In'; values: number[] } };

export type PodFailurePolicy = { rules: PodFailurePolicyRule[] };

type ExitTable = Readonly<Record<string, { code: number; retry: Retry }>>;

// The policy for an exit-code table: first match wins, so an eviction is ignored whatever the code
// it caused; codes not worth retrying fail the Job at once (an Indexed Job: only that index, so the
// other tasks' databases go on); the others count against backoffLimit (backoffLimitPerIndex).
// Codes outside the table (Node's own, 137 = OOM-killed) fall to the default, which also counts.
export function podFailurePolicy(table: ExitTable = EXIT_CODES, containerName = CONTAINER_NAME, fail: 'FailJob' | 'FailIndex' = 'FailJob'): PodFailurePolicy {
  const codes = (retry: Retry) =>
    [...new Set(Object.values(table).filter((entry) => entry.code !== 0 && entry.retry === retry).map((entry) => entry.code))].sort((a, b) => a - b);
  return {
    rules: [
      { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
      { action: fail, onExitCodes: { containerName, operator: 'In', values: codes('fail') } },
      { action: 'Count', onExitCodes: { containerName, operator: 'In', values: codes('retry') } },
    ],
  };
}

// The CronJob manifest with its podFailurePolicy replaced by the generated one; comments and the
// rest of the file are kept as they are.
export function renderCronJob(text: string, table: ExitTable = EXIT_CODES, fail: 'FailJob' | 'FailIndex' = 'FailJob'): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new Error(`cronjob.yaml does not parse: ${doc.errors[0]?.message}`);
  const existing = doc.getIn(POLICY_PATH, true);
  const node = doc.createNode(podFailurePolicy(table, CONTAINER_NAME, fail));
  // Lists of exit codes read best on one line.
  visit(node, {
    Pair(_key, pair) {
      if (isSeq(pair.value) && String(pair.key) === 'values') pair.value.flow = true;
    },
  });
  if (isMap(existing)) node.commentBefore = existing.commentBefore;
  doc.setIn(POLICY_PATH, node);
  return doc.toString({ lineWidth: 0 });
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { check: { type: 'boolean', default: false } } });
  let stale = 0;
  for (const [path, fail] of [[CRONJOB_PATH, 'FailJob'], [INDEXED_PATCH_PATH, 'FailIndex']] as const) {
    const current = await readFile(path, 'utf8');
    const rendered = renderCronJob(current, EXIT_CODES, fail);
    if (rendered === current) continue;
    if (values.check) {
      process.stderr.write(`${path} is out of date with src/exit-codes.ts: run node deploy/kubernetes/render.ts\n`);
      stale += 1;
    } else {
      await writeFile(path, rendered);
    }
  }
  return stale === 0 ? 0 : 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`render-deploy: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(2);
    },
  );
}
