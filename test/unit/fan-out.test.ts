// DB_NAMES and the task split as configuration, the share each task takes, and the rule that turns
// several databases' outcomes into one exit code.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { EXIT_CODES, severity, worstExitName, type ExitName } from '../../src/exit-codes.ts';
import { taskShare } from '../../src/fan-out.ts';

const base = { DB_TYPE: 'postgres', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups', PATH: '/usr/bin' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return [...error.problems];
  }
  assert.fail('expected a ConfigError');
}

describe('DB_NAMES configuration', () => {
  test('a comma-separated list and a JSON array give the same names, trimmed and unique', () => {
    const fromCommas = loadConfig({ ...base, DB_NAMES: ' shop , crm,shop,billing ' }).databases;
    const fromJson = loadConfig({ ...base, DB_NAMES: '["shop", "crm", "billing"]' }).databases;
    assert.deepEqual(fromCommas?.names, ['shop', 'crm', 'billing']);
    assert.deepEqual(fromJson?.names, ['shop', 'crm', 'billing']);
    assert.deepEqual(fromCommas?.task, { index: 0, count: 1 }, 'one task takes everything');
    assert.equal(loadConfig({ ...base, DB_NAMES: 'shop' }).db.name, undefined, 'each run gets its own name');
  });

  test('* asks the server, DB_EXCLUDE drops names, and without DB_NAMES nothing changes', () => {
    const config = loadConfig({ ...base, DB_NAMES: '*', DB_EXCLUDE: 'postgres, scratch' });
    assert.equal(config.databases?.names, '*');
    assert.deepEqual(config.databases?.exclude, ['postgres', 'scratch']);
    assert.equal(loadConfig({ ...base, DB_NAME: 'shop' }).databases, undefined);
  });

  test('DB_NAMES excludes DB_NAME and DB_ALL_DATABASES, and DB_EXCLUDE needs DB_NAMES', () => {
    const problems = problemsOf({ ...base, DB_NAMES: 'a,b', DB_NAME: 'a', DB_ALL_DATABASES: 'true' });
    assert.ok(problems.some((p) => /DB_NAMES and DB_NAME exclude each other/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /DB_NAMES and DB_ALL_DATABASES=true exclude each other/.test(p)), problems.join('\n'));
    assert.match(problemsOf({ ...base, DB_NAME: 'a', DB_EXCLUDE: 'b' }).join('\n'), /DB_EXCLUDE applies only with DB_NAMES/);
  });

  test('bad lists are named: an empty name, a broken JSON array, * mixed with names', () => {
    assert.match(problemsOf({ ...base, DB_NAMES: 'a,,b' }).join('\n'), /DB_NAMES: .*empty name/);
    assert.match(problemsOf({ ...base, DB_NAMES: '["a", 1]' }).join('\n'), /DB_NAMES: .*JSON array of strings/);
    assert.match(problemsOf({ ...base, DB_NAMES: '[a' }).join('\n'), /DB_NAMES: .*not a valid JSON array/);
    assert.match(problemsOf({ ...base, DB_NAMES: '*,shop' }).join('\n'), /stands alone/);
  });

  test('redis refuses DB_NAMES (one snapshot holds every database); sqlite takes files but cannot list them', () => {
    assert.match(problemsOf({ ...base, DB_TYPE: 'redis', DB_HOST: 'cache', DB_NAMES: '0,1' }).join('\n'), /DB_NAMES does not apply to redis: an RDB snapshot always holds every database/);
    assert.deepEqual(loadConfig({ ...base, DB_TYPE: 'sqlite', DB_NAMES: '/data/a.db,/data/b.db' }).databases?.names, ['/data/a.db', '/data/b.db']);
    assert.match(problemsOf({ ...base, DB_TYPE: 'sqlite', DB_NAMES: '*' }).join('\n'), /DB_NAMES=\* does not apply to sqlite/);
  });

  test('the engine still checks the rest of DB_* once, with DB_NAMES standing in for DB_NAME', () => {
    const problems = problemsOf({ ...base, DB_TYPE: 'mongodb', DB_NAMES: 'a,b,c' });
    assert.deepEqual(problems, ['DB_HOST is required for mongodb']);
  });
});

describe('task split configuration', () => {
  test('Cloud Run task index and count, or a Kubernetes completion index and the count the manifest passes', () => {
    assert.deepEqual(loadConfig({ ...base, DB_NAMES: '*', CLOUD_RUN_TASK_INDEX: '2', CLOUD_RUN_TASK_COUNT: '3' }).databases?.task, { index: 2, count: 3 });
    assert.deepEqual(loadConfig({ ...base, DB_NAMES: '*', JOB_COMPLETION_INDEX: '1', JOB_COMPLETION_COUNT: '4' }).databases?.task, { index: 1, count: 4 });
  });

  test('an index outside the count, half a pair or both platforms at once are configuration errors', () => {
    assert.match(problemsOf({ ...base, DB_NAMES: '*', CLOUD_RUN_TASK_INDEX: '3', CLOUD_RUN_TASK_COUNT: '3' }).join('\n'), /CLOUD_RUN_TASK_INDEX: 3 is not below CLOUD_RUN_TASK_COUNT \(3\)/);
    assert.match(problemsOf({ ...base, DB_NAMES: '*', JOB_COMPLETION_INDEX: '0' }).join('\n'), /JOB_COMPLETION_INDEX is set without JOB_COMPLETION_COUNT/);
    assert.match(problemsOf({ ...base, DB_NAMES: '*', JOB_COMPLETION_COUNT: '2' }).join('\n'), /JOB_COMPLETION_COUNT is set without JOB_COMPLETION_INDEX/);
    assert.match(problemsOf({ ...base, DB_NAMES: '*', JOB_COMPLETION_INDEX: '0', JOB_COMPLETION_COUNT: '0' }).join('\n'), /JOB_COMPLETION_COUNT: 0 is not a whole number of tasks/);
    assert.match(problemsOf({ ...base, DB_NAMES: '*', JOB_COMPLETION_INDEX: '1.5', JOB_COMPLETION_COUNT: '3' }).join('\n'), /JOB_COMPLETION_INDEX: 1.5 is not a task position/);
    const both = { CLOUD_RUN_TASK_INDEX: '0', CLOUD_RUN_TASK_COUNT: '2', JOB_COMPLETION_INDEX: '0', JOB_COMPLETION_COUNT: '2' };
    assert.match(problemsOf({ ...base, DB_NAMES: '*', ...both }).join('\n'), /both set/);
  });

  test('a one-database run ignores the task variables, as before', () => {
    assert.equal(loadConfig({ ...base, DB_NAME: 'shop', JOB_COMPLETION_INDEX: '3' }).databases, undefined);
  });
});

describe('taskShare', () => {
  test('every database is taken by exactly one task, whatever the number of tasks', () => {
    const names = Array.from({ length: 11 }, (_, i) => `db${String(i).padStart(2, '0')}`);
    for (const count of [1, 2, 3, 5, 11, 16]) {
      const shares = Array.from({ length: count }, (_, index) => taskShare(names, { index, count }));
      assert.deepEqual(shares.flat().sort(), names, `${count} tasks`);
      assert.ok(shares.every((share) => share.length === Math.floor(names.length / count) || share.length === Math.ceil(names.length / count)), `${count} tasks share evenly`);
    }
  });

  test('task i takes positions i, i+n, i+2n…', () => {
    assert.deepEqual(taskShare(['a', 'b', 'c', 'd', 'e', 'f', 'g'], { index: 1, count: 3 }), ['b', 'e']);
    assert.deepEqual(taskShare(['a', 'b'], { index: 4, count: 5 }), [], 'more tasks than databases leaves some with nothing');
  });
});

describe('the exit code of several databases', () => {
  const names = Object.keys(EXIT_CODES) as ExitName[];
  const permanent = names.filter((name) => EXIT_CODES[name].retry === 'fail' && name !== 'OK' && name !== 'CALLBACK_FAILED');
  const transient = names.filter((name) => EXIT_CODES[name].retry === 'retry');

  test('a failure no retry can heal beats one a retry may heal, which beats a stored backup', () => {
    for (const fail of permanent) {
      for (const retry of transient) {
        assert.equal(worstExitName(['OK', retry, fail, 'OK']), fail, `${fail} over ${retry}`);
        assert.equal(worstExitName([fail, retry]), fail);
        assert.equal(worstExitName(['OK', retry, 'CALLBACK_FAILED']), retry, `${retry} over CALLBACK_FAILED: that backup is stored`);
      }
    }
  });

  test('a lost callback beats success; no databases, or all stored, is OK', () => {
    assert.equal(worstExitName(['OK', 'CALLBACK_FAILED', 'OK']), 'CALLBACK_FAILED');
    assert.equal(worstExitName(['OK', 'OK']), 'OK');
    assert.equal(worstExitName([]), 'OK');
  });

  test('among equally severe outcomes the first in the run decides', () => {
    assert.equal(worstExitName(['DB_UNREACHABLE', 'DUMP_FAILED']), 'DB_UNREACHABLE');
    assert.equal(worstExitName(['DUMP_FAILED', 'DB_UNREACHABLE']), 'DUMP_FAILED');
    assert.equal(worstExitName(['STORAGE_DENIED', 'DB_AUTH']), 'STORAGE_DENIED');
  });

  test('the severities: OK < CALLBACK_FAILED < DUMP_FAILED = SIGTERM < DB_AUTH = CONFIG = INTERNAL', () => {
    assert.deepEqual(
      (['OK', 'CALLBACK_FAILED', 'DUMP_FAILED', 'SIGTERM', 'DB_AUTH', 'CONFIG', 'INTERNAL'] as const).map(severity),
      [0, 1, 2, 2, 3, 3, 3],
    );
  });
});
