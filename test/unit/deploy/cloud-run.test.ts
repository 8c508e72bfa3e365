// deploy/cloud-run/job.yaml: the fields `gcloud run jobs replace` reads, at the nesting Cloud Run's
// v1 Job object has (execution template → task template), with secrets from Secret Manager.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { secretVariables } from '../../../src/config.ts';
import { parseDuration } from '../../../src/units.ts';
import { DEPLOY, jobVariables, readYaml, sameInYaml11 } from './manifests.ts';

const JOB_PATH = join(DEPLOY, 'cloud-run/job.yaml');

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name?: string; key?: string } } };
type Volume = { name: string; secret?: { secretName?: string; items?: { key?: string; path?: string }[] } };
type TaskSpec = {
  maxRetries?: number;
  timeoutSeconds?: number | string;
  serviceAccountName?: string;
  containers?: { image?: string; env?: EnvVar[]; resources?: { limits?: Record<string, string> }; volumeMounts?: { name: string; mountPath: string }[] }[];
  volumes?: Volume[];
};
type CloudRunJob = {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: { template: { metadata?: unknown; spec: Record<string, unknown> & { taskCount?: number; parallelism?: number; template: { spec: TaskSpec } } } };
};

let job: CloudRunJob;
let execution: CloudRunJob['spec']['template']['spec'];
let task: TaskSpec;

before(async () => {
  const docs = await readYaml(JOB_PATH);
  assert.equal(docs.length, 1);
  job = docs[0] as CloudRunJob;
  execution = job.spec.template.spec;
  task = execution.template.spec;
});

describe('deploy/cloud-run/job.yaml', () => {
  test('parses, means the same in YAML 1.1 and 1.2, and is a run.googleapis.com/v1 Job', async () => {
    assert.ok(await sameInYaml11(JOB_PATH));
    assert.equal(job.apiVersion, 'run.googleapis.com/v1');
    assert.equal(job.kind, 'Job');
    assert.match(job.metadata.name, /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a valid job name');
  });

  test('taskCount and parallelism sit in the execution template; retries, timeout, identity and containers in the task template', () => {
    assert.equal(execution.taskCount, 1, 'one task: one dump');
    assert.equal(execution.parallelism, 1);
    for (const misplaced of ['maxRetries', 'timeoutSeconds', 'serviceAccountName', 'containers', 'volumes']) {
      assert.ok(!(misplaced in execution), `${misplaced} belongs to spec.template.spec.template.spec`);
      assert.ok(!(misplaced in job.spec.template), `${misplaced} is misplaced`);
    }
    assert.ok(!('taskCount' in task) && !('parallelism' in task), 'taskCount/parallelism belong to spec.template.spec');
    assert.ok(Number.isInteger(task.maxRetries) && (task.maxRetries ?? -1) >= 0 && (task.maxRetries ?? 11) <= 10, 'maxRetries 0–10');
    const timeout = Number(task.timeoutSeconds);
    assert.ok(Number.isInteger(timeout) && timeout > 0 && timeout <= 168 * 3600, 'timeoutSeconds within Cloud Run’s 168 h');
    assert.match(task.serviceAccountName ?? '', /^[a-z][-a-z0-9]*@[-a-z0-9_A-Z]+\.iam\.gserviceaccount\.com$/, 'a service account, no key');
    assert.equal(task.containers?.length, 1);
  });

  test('the container has resources and an image, and sets only variables the job reads, none of them reserved', async () => {
    const [container] = task.containers ?? [];
    assert.ok(container?.image);
    assert.ok(container.resources?.limits?.memory, 'memory limit');
    assert.ok(container.resources?.limits?.cpu, 'cpu limit');
    const known = await jobVariables();
    for (const entry of container.env ?? []) {
      assert.ok(known.has(entry.name), `${entry.name} is not a Plan B variable`);
      assert.doesNotMatch(entry.name, /^(CLOUD_RUN_|K_)|^PORT$/, `${entry.name} is reserved by Cloud Run`);
    }
    const timeout = parseDuration((container.env ?? []).find((e) => e.name === 'BACKUP_TIMEOUT')?.value ?? '');
    assert.ok(timeout !== undefined && timeout < Number(task.timeoutSeconds) * 1000, 'BACKUP_TIMEOUT ends before the task timeout, so the job aborts cleanly itself');
  });

  test('secrets come from Secret Manager, as an env reference or a mounted file, never as plain values', () => {
    const [container] = task.containers ?? [];
    const secrets = new Set(secretVariables());
    const env = container?.env ?? [];
    for (const entry of env) {
      if (secrets.has(entry.name)) {
        assert.equal(entry.value, undefined, `${entry.name} must not be a literal`);
        const ref = entry.valueFrom?.secretKeyRef;
        assert.ok(ref?.name && ref.key, `${entry.name}: secretKeyRef {name, key: version}`);
        assert.match(ref.key, /^(latest|\d+)$/, `${entry.name}: key is a secret version`);
      }
    }
    assert.ok(env.some((e) => e.valueFrom?.secretKeyRef), 'the example shows a secret as an env reference');
    const files = env.filter((e) => e.name.endsWith('_FILE'));
    assert.ok(files.length > 0, 'the example shows a secret as a mounted file');
    for (const entry of files) {
      assert.ok(secrets.has(entry.name.slice(0, -'_FILE'.length)), `${entry.name}: _FILE works only for secrets`);
      const mount = container?.volumeMounts?.find((m) => entry.value?.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `${entry.name} points into a mounted volume`);
      const volume = task.volumes?.find((v) => v.name === mount.name);
      assert.ok(volume?.secret?.secretName, `${mount.name} is a Secret Manager volume`);
      const file = entry.value?.slice(mount.mountPath.length + 1);
      const item = volume.secret.items?.find((i) => i.path === file);
      assert.ok(item, `the volume provides ${file}`);
      assert.match(item.key ?? '', /^(latest|\d+)$/, 'item key is a secret version');
    }
  });
});
