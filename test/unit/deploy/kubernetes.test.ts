// deploy/kubernetes: the objects validate against the Kubernetes schemas offline, the CronJob
// follows the batch and Restricted-security rules, the kustomization references what exists, and the
// podFailurePolicy equals what the exit-code table says (a test fails as soon as they drift).
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { CronJob } from 'kubernetes-models/batch/v1/CronJob';
import { ConfigMap, Namespace, Secret, ServiceAccount } from 'kubernetes-models/v1';
import { EXIT_CODES } from '../../../src/exit-codes.ts';
import { secretVariables } from '../../../src/config.ts';
import { parseDuration } from '../../../src/units.ts';
import { loadInputs } from '../../../deploy/images/render.ts';
import { CONTAINER_NAME, CRONJOB_PATH, INDEXED_PATCH_PATH, podFailurePolicy, renderCronJob } from '../../../deploy/kubernetes/render.ts';
import { DEPLOY, jobVariables, readYaml, sameInYaml11, unknownFieldErrors } from './manifests.ts';

const K8S = join(DEPLOY, 'kubernetes');

// The slice of the manifests these tests read.
type Container = {
  name: string;
  image: string;
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom?: { configMapRef?: { name: string } }[];
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
};
type PodSpec = {
  restartPolicy: string;
  serviceAccountName: string;
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown> & { seccompProfile?: { type: string } };
  containers: Container[];
  volumes?: { name: string; emptyDir?: Record<string, unknown>; secret?: { secretName: string; defaultMode?: number } }[];
};
type CronJobObject = {
  apiVersion: string;
  kind: string;
  spec: {
    concurrencyPolicy: string;
    startingDeadlineSeconds?: number;
    jobTemplate: {
      spec: {
        backoffLimit?: number;
        activeDeadlineSeconds?: number;
        ttlSecondsAfterFinished?: number;
        podFailurePolicy: ReturnType<typeof podFailurePolicy>;
        template: { spec: PodSpec };
      };
    };
  };
};
type Kustomization = {
  namespace: string;
  resources: string[];
  configMapGenerator: { name: string; envs: string[] }[];
  images: { name: string; newName?: string; newTag?: string }[];
};

let cronJob: CronJobObject;
let pod: PodSpec;
let container: Container;
let kustomization: Kustomization;
let configEnv: Map<string, string>;

// A kustomize env file: VAR=value lines, `#` comments, blank lines.
function parseEnvFile(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not VAR=value: ${line}`);
    entries.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return entries;
}

before(async () => {
  [cronJob] = (await readYaml(CRONJOB_PATH)) as [CronJobObject];
  pod = cronJob.spec.jobTemplate.spec.template.spec;
  [container] = pod.containers as [Container];
  [kustomization] = (await readYaml(join(K8S, 'kustomization.yaml'))) as [Kustomization];
  configEnv = parseEnvFile(await readFile(join(K8S, 'config.env'), 'utf8'));
});

describe('deploy/kubernetes', () => {
  test('every YAML file parses, and means the same in YAML 1.1 (what kubectl reads) as in 1.2', async () => {
    for (const file of ['namespace.yaml', 'serviceaccount.yaml', 'cronjob.yaml', 'kustomization.yaml', 'secret.example.yaml']) {
      const docs = await readYaml(join(K8S, file));
      assert.equal(docs.length, 1, file);
      assert.ok(await sameInYaml11(join(K8S, file)), `${file}: a value reads differently in YAML 1.1 (octal? yes/no?)`);
    }
  });

  test('each object validates against the Kubernetes schema of its kind', async () => {
    const [namespace] = await readYaml(join(K8S, 'namespace.yaml'));
    const [account] = await readYaml(join(K8S, 'serviceaccount.yaml'));
    const [secret] = await readYaml(join(K8S, 'secret.example.yaml'));
    assert.doesNotThrow(() => new CronJob(cronJob as never).validate());
    const badSchedule = { ...cronJob, spec: { ...cronJob.spec, schedule: 5 } };
    assert.throws(() => new CronJob(badSchedule as never).validate(), /schedule/, 'validate() can fail');
    assert.doesNotThrow(() => new Namespace(namespace as never).validate());
    assert.doesNotThrow(() => new ServiceAccount(account as never).validate());
    assert.doesNotThrow(() => new Secret(secret as never).validate());
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: kustomization.configMapGenerator[0]?.name }, data: Object.fromEntries(configEnv) };
    assert.doesNotThrow(() => new ConfigMap(configMap).validate());
    // The schema check catches wrong types; this one catches misspelt or misplaced fields too.
    const broken = structuredClone(cronJob) as unknown as { spec: { jobTemplate: { spec: Record<string, unknown> } } };
    broken.spec.jobTemplate.spec.ttlSecondAfterFinished = 1;
    assert.deepEqual(unknownFieldErrors([cronJob, namespace, account, secret, configMap] as { apiVersion: string; kind: string }[]), [], 'fields Kubernetes does not know');
    assert.match(unknownFieldErrors([{ apiVersion: cronJob.apiVersion, kind: cronJob.kind, ...broken }]).join('\n'), /ttlSecondAfterFinished/, 'the unknown-field check can fail');
  });

  test('the CronJob never overlaps runs, skips late starts, bounds the Job and cleans up after it', () => {
    const jobSpec = cronJob.spec.jobTemplate.spec;
    assert.equal(cronJob.spec.concurrencyPolicy, 'Forbid');
    assert.ok((cronJob.spec.startingDeadlineSeconds ?? 0) >= 10, 'startingDeadlineSeconds ≥ 10 s');
    assert.ok((jobSpec.activeDeadlineSeconds ?? 0) > 0, 'activeDeadlineSeconds');
    assert.ok((jobSpec.ttlSecondsAfterFinished ?? 0) > 0, 'ttlSecondsAfterFinished');
    assert.ok((jobSpec.backoffLimit ?? -1) >= 0);
    assert.equal(pod.restartPolicy, 'Never', 'podFailurePolicy requires restartPolicy Never');
    // The job stops itself at most 8 s after SIGTERM (src/main.ts); the grace period must outlast that.
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) >= 30, 'terminationGracePeriodSeconds');
    const timeout = parseDuration(configEnv.get('BACKUP_TIMEOUT') ?? '');
    assert.ok(timeout !== undefined && timeout < (jobSpec.activeDeadlineSeconds ?? 0) * 1000, 'BACKUP_TIMEOUT ends before activeDeadlineSeconds, so the job aborts cleanly itself');
  });

  test('the pod meets the Restricted pod security standard with a read-only root and /tmp as the only writable path', async () => {
    const { matrix } = await loadInputs();
    const podSecurity = pod.securityContext ?? {};
    assert.equal(podSecurity.runAsNonRoot, true);
    assert.equal(podSecurity.runAsUser, matrix.defaults.user, 'the uid the images are built with');
    assert.equal(podSecurity.seccompProfile?.type, 'RuntimeDefault');
    const security = container.securityContext ?? {};
    assert.equal(security.allowPrivilegeEscalation, false);
    assert.equal(security.readOnlyRootFilesystem, true);
    assert.deepEqual(security.capabilities?.drop, ['ALL']);
    const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
    assert.ok(tmp, '/tmp is mounted');
    assert.ok(pod.volumes?.find((v) => v.name === tmp.name)?.emptyDir, '/tmp is an emptyDir');
    const writable = (container.volumeMounts ?? []).filter((m) => !m.readOnly).map((m) => m.mountPath);
    assert.deepEqual(writable, ['/tmp']);
    const [namespace] = (await readYaml(join(K8S, 'namespace.yaml'))) as [{ metadata: { name: string; labels: Record<string, string> } }];
    assert.equal(namespace.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  });

  test('the pod names itself through the downward API and reads secrets from files, never from env values', () => {
    const env = new Map((container.env ?? []).map((e) => [e.name, e]));
    assert.equal(env.get('K8S_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
    assert.equal(env.get('K8S_POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
    assert.equal(env.get('K8S_JOB_NAME')?.valueFrom?.fieldRef?.fieldPath, "metadata.labels['batch.kubernetes.io/job-name']");
    const secrets = new Set(secretVariables());
    const secretMount = container.volumeMounts?.find((m) => pod.volumes?.find((v) => v.name === m.name)?.secret);
    assert.ok(secretMount?.readOnly, 'the secret volume is mounted read-only');
    for (const [name, entry] of env) {
      assert.ok(!secrets.has(name), `${name} is a secret: give ${name}_FILE instead`);
      if (name.endsWith('_FILE')) {
        assert.ok(secrets.has(name.slice(0, -'_FILE'.length)), `${name}: the job reads _FILE only for its secrets`);
        assert.ok(entry.value?.startsWith(`${secretMount.mountPath}/`), `${name} points into the secret volume`);
      }
    }
    for (const name of configEnv.keys()) assert.ok(!secrets.has(name), `config.env holds the secret ${name}`);
    const volume = pod.volumes?.find((v) => v.secret);
    assert.equal(volume?.secret?.defaultMode, 0o440, 'secret files readable by the group only');
  });

  test('every variable the CronJob and config.env set is one the job reads', async () => {
    const known = await jobVariables();
    for (const name of [...configEnv.keys(), ...(container.env ?? []).map((e) => e.name)]) assert.ok(known.has(name), `${name} is not a Plan B variable`);
    assert.ok(!configEnv.has('DB_TYPE'), 'DB_TYPE comes from the image');
  });

  test('the podFailurePolicy is the one generated from the exit-code table, and the committed file is up to date', async () => {
    const policy = cronJob.spec.jobTemplate.spec.podFailurePolicy;
    assert.deepEqual(policy, podFailurePolicy(EXIT_CODES));
    const text = await readFile(CRONJOB_PATH, 'utf8');
    assert.equal(renderCronJob(text), text, 'run node deploy/kubernetes/render.ts');
  });

  test('permanent failures fail the Job, transient ones count against backoffLimit, evictions are ignored', () => {
    const rules = cronJob.spec.jobTemplate.spec.podFailurePolicy.rules;
    assert.ok(rules.length <= 20);
    assert.deepEqual(rules[0], { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] }, 'first rule: evictions and preemptions do not count');
    const codes = (action: string) => rules.flatMap((rule) => ('onExitCodes' in rule && rule.action === action ? rule.onExitCodes.values : []));
    const table = Object.values(EXIT_CODES).filter((entry) => entry.code !== 0);
    assert.deepEqual(codes('FailJob'), table.filter((e) => e.retry === 'fail').map((e) => e.code).sort((a, b) => a - b));
    assert.deepEqual(codes('Count'), table.filter((e) => e.retry === 'retry').map((e) => e.code).sort((a, b) => a - b));
    for (const rule of rules) {
      if (!('onExitCodes' in rule)) continue;
      const { values, containerName, operator } = rule.onExitCodes;
      assert.equal(containerName, container.name);
      assert.equal(containerName, CONTAINER_NAME);
      assert.equal(operator, 'In');
      assert.ok(values.length >= 1 && values.length <= 255);
      assert.deepEqual(values, [...new Set(values)].sort((a, b) => a - b), 'sorted and unique, as the API requires');
      assert.ok(!values.includes(0), 'no 0 with In');
    }
  });

  test('a change to the exit-code table makes the committed policy out of date', async () => {
    const text = await readFile(CRONJOB_PATH, 'utf8');
    const flipped = { ...EXIT_CODES, DUMP_FAILED: { ...EXIT_CODES.DUMP_FAILED, retry: 'fail' as const } };
    assert.notEqual(renderCronJob(text, flipped), text);
    const added = { ...EXIT_CODES, NEW_CODE: { code: 99, retry: 'retry' as const, meaning: 'a new outcome' } };
    assert.notEqual(renderCronJob(text, added), text);
    assert.ok(podFailurePolicy(added).rules.some((r) => 'onExitCodes' in r && r.action === 'Count' && r.onExitCodes.values.includes(99)));
  });

  test('the kustomization references files that exist and names that match the objects', async () => {
    for (const resource of kustomization.resources) assert.ok((await stat(join(K8S, resource))).isFile(), `${resource} does not exist`);
    for (const generator of kustomization.configMapGenerator) for (const env of generator.envs) assert.ok((await stat(join(K8S, env))).isFile(), `${env} does not exist`);
    assert.ok(!kustomization.resources.includes('secret.example.yaml'), 'applying placeholder secrets would overwrite real ones');
    const [namespace] = (await readYaml(join(K8S, 'namespace.yaml'))) as [{ metadata: { name: string } }];
    const [account] = (await readYaml(join(K8S, 'serviceaccount.yaml'))) as [{ metadata: { name: string } }];
    const [secret] = (await readYaml(join(K8S, 'secret.example.yaml'))) as [{ metadata: { name: string; namespace: string }; stringData: Record<string, string> }];
    assert.equal(kustomization.namespace, namespace.metadata.name);
    assert.equal(secret.metadata.namespace, namespace.metadata.name);
    assert.equal(pod.serviceAccountName, account.metadata.name);
    assert.equal(container.envFrom?.[0]?.configMapRef?.name, kustomization.configMapGenerator[0]?.name);
    assert.equal(pod.volumes?.find((v) => v.secret)?.secret?.secretName, secret.metadata.name);
    const mountPath = container.volumeMounts?.find((m) => pod.volumes?.find((v) => v.name === m.name)?.secret)?.mountPath ?? '';
    for (const entry of container.env ?? []) {
      if (entry.name.endsWith('_FILE')) assert.ok(entry.value && Object.keys(secret.stringData).includes(entry.value.slice(mountPath.length + 1)), `${entry.name}: the example secret has no key for it`);
    }
    const repository = container.image.slice(0, container.image.lastIndexOf(':'));
    assert.ok(kustomization.images.some((image) => image.name === repository), 'the images override matches the CronJob image');
  });
});

describe('deploy/kubernetes/indexed (DB_NAMES over an Indexed Job)', () => {
  type IndexedPatch = {
    spec: { jobTemplate: { spec: Record<string, unknown> & { completions: number; podFailurePolicy: unknown; template: { spec: { containers: Container[] } } } } };
  };
  let patch: IndexedPatch;
  before(async () => {
    [patch] = (await readYaml(INDEXED_PATCH_PATH)) as [IndexedPatch];
  });

  test('a kustomize component patching the CronJob, meaning the same in YAML 1.1 and 1.2', async () => {
    const [component] = (await readYaml(join(K8S, 'indexed/kustomization.yaml'))) as [{ kind: string; patches: { path: string }[] }];
    assert.equal(component.kind, 'Component');
    assert.deepEqual(component.patches, [{ path: 'indexed-job.yaml' }]);
    assert.ok(await sameInYaml11(INDEXED_PATCH_PATH));
  });

  test('the patched CronJob is a valid Indexed Job whose pods are told the number of tasks', () => {
    const job = structuredClone(cronJob) as unknown as { spec: { jobTemplate: { spec: Record<string, unknown> & { template: { spec: PodSpec } } } } };
    const { template, backoffLimit, ...fields } = patch.spec.jobTemplate.spec;
    assert.equal(backoffLimit, null, 'the Job-wide backoffLimit is removed: each index has its own');
    delete job.spec.jobTemplate.spec.backoffLimit;
    Object.assign(job.spec.jobTemplate.spec, fields);
    const [patched] = job.spec.jobTemplate.spec.template.spec.containers as [Container];
    const env = template.spec.containers.find((c) => c.name === patched.name)?.env ?? [];
    patched.env = [...(patched.env ?? []), ...env];
    assert.doesNotThrow(() => new CronJob(job as never).validate());
    assert.deepEqual(unknownFieldErrors([job as unknown as { apiVersion: string; kind: string }]), []);
    assert.equal(fields.completionMode, 'Indexed');
    assert.equal(env.find((e) => e.name === 'JOB_COMPLETION_COUNT')?.value, String(patch.spec.jobTemplate.spec.completions), 'JOB_COMPLETION_COUNT equals completions');
  });

  test('every variable it sets is one the job reads, and a failure no retry heals fails only its index', async () => {
    const known = await jobVariables();
    for (const container of patch.spec.jobTemplate.spec.template.spec.containers) {
      for (const entry of container.env ?? []) assert.ok(known.has(entry.name), `${entry.name} is not a Plan B variable`);
    }
    assert.deepEqual(patch.spec.jobTemplate.spec.podFailurePolicy, podFailurePolicy(EXIT_CODES, CONTAINER_NAME, 'FailIndex'));
    const text = await readFile(INDEXED_PATCH_PATH, 'utf8');
    assert.equal(renderCronJob(text, EXIT_CODES, 'FailIndex'), text, 'run node deploy/kubernetes/render.ts');
  });
});
