// The expiry rules in deploy/lifecycle/, checked offline: each cloud's JSON against the documented
// shape of its CLI's input (aws s3api put-bucket-lifecycle-configuration, gcloud storage buckets update
// --lifecycle-file, az storage account management-policy create --policy), every file against the plan
// in retention-plan.json, and the Terraform files against the JSON, rule by rule. `terraform validate`
// needs the providers, which cannot be downloaded here; `terraform fmt -check` runs when terraform is
// installed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { requireBinaries } from '../../support/require-binary.ts';
import { ROOT } from '../../support/job.ts';

const DIR = join(ROOT, 'deploy/lifecycle');
const json = (name: string) => JSON.parse(readFileSync(join(DIR, name), 'utf8')) as Record<string, unknown>;

type Plan = { azureContainer: string; prefixes: { prefix: string; days: number; name: string }[]; abortIncompleteUploadsAfterDays: number; deleteOldVersionsAfterDays: number };
const plan = json('retention-plan.json') as unknown as Plan;

type Obj = Record<string, unknown>;
const isObj = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);
const positiveInt = (value: unknown) => Number.isInteger(value) && (value as number) > 0;

// Every key of `value` is one of `allowed`; says which are not.
function onlyKeys(value: unknown, allowed: readonly string[], where: string): void {
  assert.ok(isObj(value), `${where} is an object`);
  const extra = Object.keys(value).filter((key) => !allowed.includes(key));
  assert.deepEqual(extra, [], `${where}: unknown keys`);
}

// --- A reader for the subset of HCL the Terraform files use: blocks with labels, attributes whose
// values are strings, numbers, booleans, lists of those, or object literals; `#` comments. ---
type HclBlock = { type: string; labels: string[]; attributes: Record<string, unknown>; blocks: HclBlock[] };

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const pattern = /\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|[{}[\]=,]|[A-Za-z0-9_.\-]+|>=|[^\s]/gy;
  for (let match = pattern.exec(text); match !== null && match[0] !== ''; match = pattern.exec(text)) {
    if (!/^\s/.test(match[0]) && !match[0].startsWith('#')) tokens.push(match[0]);
  }
  return tokens;
}

function parseHcl(text: string): HclBlock {
  const tokens = tokenize(text);
  let at = 0;
  const next = () => tokens[at++] ?? '';
  const expect = (token: string) => assert.equal(next(), token, `HCL: expected ${token} at token ${at}`);
  const value = (): unknown => {
    const token = next();
    if (token === '[') {
      const items: unknown[] = [];
      while (tokens[at] !== ']') {
        items.push(value());
        if (tokens[at] === ',') at += 1;
      }
      expect(']');
      return items;
    }
    if (token === '{') {
      const fields: Obj = {};
      while (tokens[at] !== '}') {
        const key = next();
        expect('=');
        fields[key] = value();
      }
      expect('}');
      return fields;
    }
    if (token.startsWith('"')) return JSON.parse(token) as string;
    if (/^-?\d+$/.test(token)) return Number(token);
    if (token === 'true' || token === 'false') return token === 'true';
    return { reference: token };
  };
  const body = (until: string): HclBlock => {
    const block: HclBlock = { type: '', labels: [], attributes: {}, blocks: [] };
    while (at < tokens.length && tokens[at] !== until) {
      const name = next();
      if (tokens[at] === '=') {
        at += 1;
        block.attributes[name] = value();
        continue;
      }
      const labels: string[] = [];
      while (tokens[at]?.startsWith('"')) labels.push(JSON.parse(next()) as string);
      expect('{');
      block.blocks.push({ ...body('}'), type: name, labels });
      expect('}');
    }
    return block;
  };
  return body('');
}

const hcl = (name: string) => parseHcl(readFileSync(join(DIR, 'terraform', name), 'utf8'));
const resource = (file: HclBlock, type: string) => {
  const found = file.blocks.find((block) => block.type === 'resource' && block.labels[0] === type);
  assert.ok(found, `resource ${type}`);
  return found;
};
const child = (block: HclBlock, type: string) => block.blocks.filter((b) => b.type === type);
const one = (block: HclBlock, type: string) => {
  const [found, ...more] = child(block, type);
  assert.ok(found && more.length === 0, `exactly one ${type} block in ${block.type}`);
  return found;
};

describe('S3 lifecycle (aws s3api put-bucket-lifecycle-configuration)', () => {
  const config = json('s3-lifecycle.json');
  const rules = config.Rules as Obj[];

  test('has the documented shape: Rules with ID, Status, one Filter, and well-formed actions', () => {
    onlyKeys(config, ['Rules'], 'top level');
    assert.ok(Array.isArray(rules) && rules.length > 0 && rules.length <= 1000);
    const ids = new Set<string>();
    for (const rule of rules) {
      const where = `rule ${String(rule.ID)}`;
      onlyKeys(rule, ['ID', 'Status', 'Filter', 'Expiration', 'NoncurrentVersionExpiration', 'AbortIncompleteMultipartUpload', 'Transitions'], where);
      assert.ok(typeof rule.ID === 'string' && rule.ID.length > 0 && rule.ID.length <= 255, `${where}: ID of 1-255 characters`);
      assert.ok(!ids.has(rule.ID), `${where}: IDs are unique`);
      ids.add(rule.ID);
      assert.ok(rule.Status === 'Enabled' || rule.Status === 'Disabled', `${where}: Status`);
      onlyKeys(rule.Filter, ['Prefix'], `${where}.Filter`);
      assert.equal(typeof (rule.Filter as Obj).Prefix, 'string');
      const actions = ['Expiration', 'NoncurrentVersionExpiration', 'AbortIncompleteMultipartUpload', 'Transitions'].filter((action) => action in rule);
      assert.ok(actions.length > 0, `${where}: at least one action`);
      if ('Expiration' in rule) {
        onlyKeys(rule.Expiration, ['Days', 'Date', 'ExpiredObjectDeleteMarker'], `${where}.Expiration`);
        assert.equal(Object.keys(rule.Expiration as Obj).length, 1, `${where}: Expiration takes exactly one of Days, Date, ExpiredObjectDeleteMarker`);
        assert.ok(positiveInt((rule.Expiration as Obj).Days), `${where}: Expiration.Days is a positive whole number`);
      }
      if ('NoncurrentVersionExpiration' in rule) {
        onlyKeys(rule.NoncurrentVersionExpiration, ['NoncurrentDays', 'NewerNoncurrentVersions'], `${where}.NoncurrentVersionExpiration`);
        assert.ok(positiveInt((rule.NoncurrentVersionExpiration as Obj).NoncurrentDays));
      }
      if ('AbortIncompleteMultipartUpload' in rule) {
        onlyKeys(rule.AbortIncompleteMultipartUpload, ['DaysAfterInitiation'], `${where}.AbortIncompleteMultipartUpload`);
        assert.ok(positiveInt((rule.AbortIncompleteMultipartUpload as Obj).DaysAfterInitiation));
      }
    }
  });

  test('keeps each BACKUP_PATH prefix of the plan for its days, and aborts incomplete uploads bucket-wide', () => {
    for (const { prefix, days } of plan.prefixes) {
      const rule = rules.find((candidate) => (candidate.Filter as Obj).Prefix === prefix);
      assert.ok(rule && rule.Status === 'Enabled', `a rule for ${prefix}`);
      assert.deepEqual(rule.Expiration, { Days: days });
      assert.deepEqual(rule.NoncurrentVersionExpiration, { NoncurrentDays: plan.deleteOldVersionsAfterDays });
    }
    const abort = rules.find((rule) => 'AbortIncompleteMultipartUpload' in rule);
    assert.deepEqual(abort?.Filter, { Prefix: '' }, 'every incomplete upload, whatever its key');
    assert.deepEqual(abort?.AbortIncompleteMultipartUpload, { DaysAfterInitiation: plan.abortIncompleteUploadsAfterDays });
  });

  test('the Terraform form (aws_s3_bucket_lifecycle_configuration) has the same rules', () => {
    const lifecycle = resource(hcl('s3.tf'), 'aws_s3_bucket_lifecycle_configuration');
    const fromTerraform = child(lifecycle, 'rule').map((rule) => {
      const out: Obj = { ID: rule.attributes.id, Status: rule.attributes.status, Filter: { Prefix: one(rule, 'filter').attributes.prefix } };
      const expiration = child(rule, 'expiration')[0];
      if (expiration) out.Expiration = { Days: expiration.attributes.days };
      const noncurrent = child(rule, 'noncurrent_version_expiration')[0];
      if (noncurrent) out.NoncurrentVersionExpiration = { NoncurrentDays: noncurrent.attributes.noncurrent_days };
      const abort = child(rule, 'abort_incomplete_multipart_upload')[0];
      if (abort) out.AbortIncompleteMultipartUpload = { DaysAfterInitiation: abort.attributes.days_after_initiation };
      return out;
    });
    assert.deepEqual(fromTerraform, rules);
  });
});

describe('GCS lifecycle (gcloud storage buckets update --lifecycle-file)', () => {
  const config = json('gcs-lifecycle.json');
  const rules = config.rule as Obj[];
  const CONDITIONS = ['age', 'createdBefore', 'customTimeBefore', 'daysSinceCustomTime', 'daysSinceNoncurrentTime', 'isLive', 'matchesPrefix', 'matchesSuffix', 'matchesStorageClass', 'noncurrentTimeBefore', 'numNewerVersions'];

  test('has the documented shape: rule[] of {action: {type}, condition}', () => {
    onlyKeys(config, ['rule'], 'top level');
    assert.ok(Array.isArray(rules) && rules.length > 0 && rules.length <= 100);
    for (const [index, rule] of rules.entries()) {
      const where = `rule[${index}]`;
      onlyKeys(rule, ['action', 'condition'], where);
      onlyKeys(rule.action, ['type', 'storageClass'], `${where}.action`);
      assert.ok(['Delete', 'SetStorageClass', 'AbortIncompleteMultipartUpload'].includes(String((rule.action as Obj).type)), `${where}: action type`);
      onlyKeys(rule.condition, CONDITIONS, `${where}.condition`);
      const condition = rule.condition as Obj;
      assert.ok(Object.keys(condition).length > 0, `${where}: a condition`);
      for (const key of ['age', 'daysSinceNoncurrentTime']) if (key in condition) assert.ok(Number.isInteger(condition[key]) && (condition[key] as number) >= 0, `${where}.${key}`);
      if ('matchesPrefix' in condition) assert.ok(Array.isArray(condition.matchesPrefix) && condition.matchesPrefix.every((p) => typeof p === 'string' && p.length > 0));
    }
  });

  test('keeps each BACKUP_PATH prefix of the plan for its days', () => {
    for (const { prefix, days } of plan.prefixes) {
      const rule = rules.find((candidate) => ((candidate.condition as Obj).matchesPrefix as string[] | undefined)?.includes(prefix));
      assert.deepEqual(rule, { action: { type: 'Delete' }, condition: { age: days, matchesPrefix: [prefix] } });
    }
    assert.ok(rules.some((rule) => (rule.action as Obj).type === 'AbortIncompleteMultipartUpload' && (rule.condition as Obj).age === plan.abortIncompleteUploadsAfterDays));
  });

  test('the Terraform form (google_storage_bucket lifecycle_rule) has the same rules, on a bucket with object retention', () => {
    const bucket = resource(hcl('gcs.tf'), 'google_storage_bucket');
    assert.equal(bucket.attributes.enable_object_retention, true, 'STORAGE_RETAIN_DAYS needs object retention, set at creation');
    const names: Record<string, string> = { age: 'age', matches_prefix: 'matchesPrefix', days_since_noncurrent_time: 'daysSinceNoncurrentTime' };
    const fromTerraform = child(bucket, 'lifecycle_rule').map((rule) => {
      const condition: Obj = {};
      for (const [key, value] of Object.entries(one(rule, 'condition').attributes)) {
        if (key === 'with_state') condition.isLive = value === 'LIVE';
        else condition[names[key] ?? `unknown:${key}`] = value;
      }
      return { action: { type: one(rule, 'action').attributes.type }, condition };
    });
    assert.deepEqual(fromTerraform, rules);
  });
});

describe('Azure lifecycle management (az storage account management-policy create --policy)', () => {
  const config = json('azure-management-policy.json');
  const rules = config.rules as Obj[];

  test('has the documented shape: named Lifecycle rules with actions and filters', () => {
    onlyKeys(config, ['rules'], 'top level');
    assert.ok(Array.isArray(rules) && rules.length > 0 && rules.length <= 100);
    const names = new Set<string>();
    for (const rule of rules) {
      const where = `rule ${String(rule.name)}`;
      onlyKeys(rule, ['enabled', 'name', 'type', 'definition'], where);
      assert.match(String(rule.name), /^[A-Za-z0-9]{1,256}$/, `${where}: a name of letters and digits`);
      assert.ok(!names.has(String(rule.name)), `${where}: names are unique`);
      names.add(String(rule.name));
      assert.equal(rule.enabled, true);
      assert.equal(rule.type, 'Lifecycle');
      onlyKeys(rule.definition, ['actions', 'filters'], `${where}.definition`);
      const { actions, filters } = rule.definition as { actions: Obj; filters: Obj };
      onlyKeys(actions, ['baseBlob', 'snapshot', 'version'], `${where}.actions`);
      onlyKeys(actions.baseBlob, ['delete', 'tierToCool', 'tierToArchive', 'tierToCold'], `${where}.actions.baseBlob`);
      onlyKeys((actions.baseBlob as Obj).delete, ['daysAfterModificationGreaterThan', 'daysAfterCreationGreaterThan', 'daysAfterLastAccessTimeGreaterThan'], `${where}.baseBlob.delete`);
      onlyKeys((actions.version as Obj).delete, ['daysAfterCreationGreaterThan'], `${where}.version.delete`);
      onlyKeys(filters, ['blobTypes', 'prefixMatch', 'blobIndexMatch'], `${where}.filters`);
      assert.deepEqual(filters.blobTypes, ['blockBlob']);
      const prefixes = filters.prefixMatch as string[];
      assert.ok(Array.isArray(prefixes) && prefixes.length > 0 && prefixes.length <= 10, `${where}: 1-10 prefixes`);
      for (const prefix of prefixes) assert.ok(prefix.startsWith(`${plan.azureContainer}/`), `${where}: ${prefix} starts with the container name`);
    }
  });

  test('keeps each BACKUP_PATH prefix of the plan for its days, old versions one day longer', () => {
    for (const { prefix, days } of plan.prefixes) {
      const rule = rules.find((candidate) => ((candidate.definition as Obj).filters as Obj).prefixMatch?.toString() === `${plan.azureContainer}/${prefix}`);
      assert.ok(rule, `a rule for ${prefix}`);
      assert.deepEqual((rule.definition as Obj).actions, {
        baseBlob: { delete: { daysAfterModificationGreaterThan: days } },
        version: { delete: { daysAfterCreationGreaterThan: days + plan.deleteOldVersionsAfterDays } },
      });
    }
  });

  test('the Terraform form (azurerm_storage_management_policy) has the same rules', () => {
    const policy = resource(hcl('azure.tf'), 'azurerm_storage_management_policy');
    const fromTerraform = child(policy, 'rule').map((rule) => {
      const actions = one(rule, 'actions');
      const filters = one(rule, 'filters');
      return {
        enabled: rule.attributes.enabled,
        name: rule.attributes.name,
        type: 'Lifecycle',
        definition: {
          actions: {
            baseBlob: { delete: { daysAfterModificationGreaterThan: one(actions, 'base_blob').attributes.delete_after_days_since_modification_greater_than } },
            version: { delete: { daysAfterCreationGreaterThan: one(actions, 'version').attributes.delete_after_days_since_creation } },
          },
          filters: { blobTypes: filters.attributes.blob_types, prefixMatch: filters.attributes.prefix_match },
        },
      };
    });
    assert.deepEqual(fromTerraform, rules);
  });
});

describe('the Terraform files', () => {
  test('the HCL reader sees a changed value (so the equality checks can fail)', () => {
    const changed = parseHcl(readFileSync(join(DIR, 'terraform/s3.tf'), 'utf8').replace('days = 14', 'days = 15'));
    const rule = child(resource(changed, 'aws_s3_bucket_lifecycle_configuration'), 'rule')[0];
    assert.equal(rule && one(rule, 'expiration').attributes.days, 15);
  });

  test('are formatted as terraform fmt writes them', (t) => {
    if (!requireBinaries(t, ['terraform'])) return;
    execFileSync('terraform', ['fmt', '-check', '-diff', '-recursive', join(DIR, 'terraform')], { stdio: 'pipe', env: { ...process.env, TF_CLI_CONFIG_FILE: '/dev/null' } });
  });
});
