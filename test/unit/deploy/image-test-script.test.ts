// The image test script cannot run here (no Docker engine); its dry run prints the 5 steps'
// commands, which is what these tests read. The real run is documented in docs/images.md.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ENGINES } from '../../../src/engines/registry.ts';
import { ROOT, imageName, loadInputs } from '../../../deploy/images/render.ts';
import { ACTORS, DEFAULT_BUILD_DIR, MOVIES, describePlan, executePlan, parseListing, planImageTest, type Action, type PlanOptions } from '../../../deploy/images/test-image.ts';

const NODE = join(ROOT, 'node_modules/.bin/node');
const SCRIPT = join(ROOT, 'deploy/images/test-image.ts');

function dryRun(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(NODE, [SCRIPT, ...args], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const { matrix, versions } = await loadInputs();
const options: PlanOptions = {
  id: 't1', s3Image: 'minio/minio:RELEASE.test', mcImage: 'minio/mc:RELEASE.test', user: matrix.defaults.user, nodeVersion: versions.node, keepImage: false, buildDir: DEFAULT_BUILD_DIR,
};

const commands = (actions: readonly Action[]): string[] =>
  actions.flatMap((action) => (action.kind === 'run' ? [action.pipe.map((argv) => argv.join(' ')).join(' | ')] : []));

describe('the image test script', () => {
  test('its dry run prints the 5 steps and the cleanup for an image, without needing Docker', () => {
    const { status, stdout, stderr } = dryRun('postgresql-17', '--dry-run');
    assert.equal(status, 0, stderr);
    for (const step of [1, 2, 3, 4, 5]) assert.match(stdout, new RegExp(`^# Step ${step}/5: `, 'm'));
    assert.match(stdout, /^# Cleanup \(always/m);
    assert.match(stdout, /^docker run --detach .* postgres:17-bookworm$/m, 'step 1 starts the official image of the same version');
    assert.match(stdout, /^docker buildx build --file build\/images\/postgresql-17\/Dockerfile .*--load dist$/m, 'step 3 builds the rendered Dockerfile');
    assert.match(stdout, /--read-only --tmpfs \/tmp:/, 'step 4 proves the read-only root filesystem works');
    assert.match(stdout, /STORAGE_TYPE=s3 .*STORAGE_ENDPOINT=http:\/\/s3:9000/, 'step 4 backs up into the local S3 server');
    assert.match(stdout, /--entrypoint pg_restore /, 'step 5 restores with the stock tool');
    assert.match(stdout, /^docker network rm planb-it-dryrun$/m);
  });

  test('every image in the matrix has a dry run that uses its engine’s restore tool and its official image', () => {
    const { status, stdout, stderr } = dryRun('--all', '--dry-run', '--id', 'ci');
    assert.equal(status, 0, stderr);
    for (const spec of matrix.images) {
      const name = imageName(spec);
      const section = stdout.split('# Plan B image test: ').find((part) => part.startsWith(`${name} `)) ?? '';
      assert.ok(section, `no dry run for ${name}`);
      assert.equal(section.match(/^# Step \d\/5: /gm)?.length, 5, name);
      assert.ok(section.includes(`--entrypoint ${ENGINES[spec.dbType].restoreTool} `) || section.includes(`redis-server`), `${name}: restore tool`);
      const server = spec.toolsFrom?.image ?? spec.base;
      if (spec.dbType !== 'sqlite') assert.ok(section.includes(` ${server}`), `${name}: starts ${server}`);
    }
  });

  test('an unknown image name is refused with the list of known ones', () => {
    const { status, stderr } = dryRun('oracle-23', '--dry-run');
    assert.equal(status, 2);
    assert.match(stderr, /unknown image: oracle-23/);
    assert.match(stderr, /postgresql-17/);
  });

  test('the plan seeds the whole dataset, compares the seeded snapshot with the restored one and removes everything it created', () => {
    for (const spec of matrix.images) {
      const plan = planImageTest(spec, options);
      assert.equal(plan.steps.length, 5);
      const seed = plan.steps[1]?.actions ?? [];
      const seedText = seed.map((a) => (a.kind === 'run' ? `${a.pipe.flat().join(' ')} ${a.input ?? ''}` : '')).join('\n');
      for (const text of [...MOVIES.map((m) => m.title), ...ACTORS.map((a) => a.name)]) {
        assert.ok(seedText.includes(text) || seedText.includes(JSON.stringify(text).slice(1, -1)), `${plan.name}: seeds ${text}`);
      }
      assert.ok(seed.some((a) => a.kind === 'run' && a.capture?.name === 'seeded' && a.check), `${plan.name}: keeps and checks the seeded snapshot`);
      const last = plan.steps[4]?.actions ?? [];
      assert.deepEqual(last.at(-1), { kind: 'compare', left: 'seeded', right: 'restored' }, plan.name);

      const created = commands(plan.steps.flatMap((s) => s.actions));
      const removed = commands(plan.cleanup).join('\n');
      for (const container of created.flatMap((c) => [...c.matchAll(/--name (\S+)/g)].map((m) => m[1] ?? ''))) {
        assert.ok(removed.includes(container), `${plan.name}: ${container} is not removed`);
      }
      for (const volume of created.flatMap((c) => [...c.matchAll(/volume create --label \S+ (\S+)/g)].map((m) => m[1] ?? ''))) {
        assert.ok(removed.includes(volume), `${plan.name}: volume ${volume} is not removed`);
      }
      assert.match(removed, /docker network rm planb-it-t1/, plan.name);
      assert.match(removed, new RegExp(`docker image rm --force ${plan.tag}`), plan.name);
    }
  });

  test('the printed plan quotes arguments so that it can be pasted into a shell', () => {
    const spec = matrix.images.find((s) => s.dbType === 'redis');
    assert.ok(spec);
    const text = describePlan(planImageTest(spec, options));
    assert.match(text, /EVAL 'local keys = redis\.call\('\\''KEYS'\\''/);
    assert.match(text, /<<'INPUT'\nSET movie:1 /);
  });

  test('the stored object is found in the bucket listing, and must be exactly one zstd object', () => {
    const listing = [
      '{"status":"success","type":"folder","key":"image-test/"}',
      '{"status":"success","type":"file","lastModified":"2026-01-01T00:00:00Z","size":1234,"key":"image-test/planb_testdb/20260101T000000Z-1a2b3c4d.dump.zst"}',
    ].join('\n');
    assert.equal(parseListing(listing), 'image-test/planb_testdb/20260101T000000Z-1a2b3c4d.dump.zst');
    assert.throws(() => parseListing(''), /exactly one object.*found 0/);
    assert.throws(() => parseListing(`${listing}\n${listing}`), /found 2/);
    assert.throws(() => parseListing('{"type":"file","key":"x.dump.gz"}'), /zstd-compressed/);
  });
});

// A stand-in for the docker CLI: logs its argv, answers the few commands whose output the test
// reads, fails when its argv contains FAKE_DOCKER_FAIL_ON and hangs when it contains FAKE_DOCKER_HANG_ON.
const FAKE_DOCKER = `
import { appendFileSync, readFileSync } from 'node:fs';
const args = process.argv.slice(2);
const line = args.join(' ');
appendFileSync(process.env.FAKE_DOCKER_LOG, line + '\\n');
if (args.includes('--interactive') && !process.env.FAKE_DOCKER_HANG_ON) readFileSync(0);
if (process.env.FAKE_DOCKER_HANG_ON && line.includes(process.env.FAKE_DOCKER_HANG_ON)) setInterval(() => {}, 60000);
else if (process.env.FAKE_DOCKER_FAIL_ON && line.includes(process.env.FAKE_DOCKER_FAIL_ON)) {
  process.stderr.write('fake docker: failing on purpose\\n');
  process.exit(1);
}
const tag = args.find((a) => a.startsWith('planb-backup-')) ?? '';
if (args[0] === 'image' && args[1] === 'inspect') {
  const db = tag.slice('planb-backup-'.length).split(':')[0];
  console.log(JSON.stringify({ User: '10001:10001', Entrypoint: ['/usr/local/bin/node', '--enable-source-maps', '/opt/planb/main.js'], Cmd: null, Env: ['DB_TYPE=' + db], Labels: { 'planb.database': db } }));
} else if (args.includes('ls') && args.includes('--json')) {
  console.log(JSON.stringify({ status: 'success', type: 'file', key: 'image-test/planb_testdb/20260101T000000Z-1a2b3c4d.dump.zst' }));
} else if (line.includes('SELECT id, title')) {
  const restored = line.includes('restore');
  console.log(restored && process.env.FAKE_DOCKER_RESTORED ? process.env.FAKE_DOCKER_RESTORED : ${JSON.stringify([...MOVIES.map((m) => m.title), ...ACTORS.map((a) => a.name)].join('\n'))});
} else if (line.includes('STORAGE_TYPE=s3')) {
  console.log(JSON.stringify({ severity: 'INFO', message: 'backup stored' }));
}
`;

describe('the image test runner, driven by a fake docker', () => {
  let dir: string;
  let log: string;
  const spec = matrix.images.find((s) => imageName(s) === 'postgresql-17');

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'planb-fake-docker-'));
    log = join(dir, 'docker.log');
    await writeFile(join(dir, 'docker'), `#!${process.execPath}\n${FAKE_DOCKER}`);
    await chmod(join(dir, 'docker'), 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function runPlan(extraEnv: Record<string, string>, id: string): Promise<{ ok: boolean; calls: string[]; output: string[] }> {
    assert.ok(spec);
    const output: string[] = [];
    await writeFile(log, '');
    const plan = planImageTest(spec, { ...options, id, buildDir: join(dir, 'images') });
    const ok = await executePlan(plan, (line) => output.push(line), { PATH: `${dir}:${process.env.PATH ?? ''}`, FAKE_DOCKER_LOG: log, ...extraEnv });
    const calls = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
    return { ok, calls, output };
  }

  test('a run where every command succeeds passes all 5 steps, restores the object it listed, and cleans up', async () => {
    const { ok, calls, output } = await runPlan({}, 'ok');
    assert.equal(ok, true, output.join('\n'));
    assert.equal(output.filter((line) => line.startsWith('Step ')).length, 5);
    assert.ok(calls.some((c) => c.includes('cat local/planb-test/image-test/planb_testdb/20260101T000000Z-1a2b3c4d.dump.zst')), 'step 5 fetches the listed key');
    assert.ok(calls.some((c) => c.startsWith('buildx build') && c.includes(join(dir, 'images', 'postgresql-17', 'Dockerfile'))), 'builds the rendered file');
    assert.match(await readFile(join(dir, 'images', 'postgresql-17', 'Dockerfile'), 'utf8'), /^FROM postgres:17-bookworm$/m);
    assert.deepEqual(calls.slice(-4).map((c) => c.split(' ').slice(0, 2).join(' ')), ['rm --force', 'volume rm', 'network rm', 'image rm']);
  });

  test('a failing backup stops the run at step 4 and the cleanup still runs', async () => {
    const { ok, calls, output } = await runPlan({ FAKE_DOCKER_FAIL_ON: 'STORAGE_TYPE=s3' }, 'fail');
    assert.equal(ok, false);
    assert.match(output.join('\n'), /FAILED at step 4 .*\n.*exited 1[\s\S]*failing on purpose/);
    assert.ok(!calls.some((c) => c.includes(' cat local/')), 'no restore after a failed backup');
    assert.ok(calls.some((c) => c.startsWith('network rm planb-it-fail')), 'cleanup ran');
  });

  test('Ctrl-C stops the run, still removes what it created and exits 130', async (t) => {
    if (!existsSync(join(ROOT, 'dist/main.js'))) {
      if (process.env.CI) throw new Error('dist/main.js is missing (CI is set): run npm run build');
      t.skip('dist/main.js is missing: run npm run build');
      return;
    }
    await writeFile(log, '');
    const child = spawn(NODE, [SCRIPT, 'postgresql-17', '--id', 'int'], {
      cwd: ROOT,
      env: { PATH: `${dir}:${process.env.PATH ?? ''}`, FAKE_DOCKER_LOG: log, FAKE_DOCKER_HANG_ON: 'psql --no-psqlrc -v ON_ERROR_STOP=1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      stdout += text;
    });
    const exited = once(child, 'close');
    // Wait until the seed step hangs, as a slow server would, then press Ctrl-C.
    for (let waited = 0; !(await readFile(log, 'utf8')).includes('psql --no-psqlrc'); waited += 50) {
      assert.ok(waited < 30_000, `the run never reached the seed step:\n${stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    assert.equal(code, 130, stdout);
    const calls = (await readFile(log, 'utf8')).split('\n');
    assert.ok(calls.some((c) => c.startsWith('rm --force --volumes planb-it-int-db')), 'containers removed');
    assert.ok(calls.some((c) => c.startsWith('network rm planb-it-int')), 'network removed');
    assert.ok(!calls.some((c) => c.startsWith('buildx')), 'nothing after the interrupted step');
  });

  test('a restore that differs from the seeded data fails the comparison', async () => {
    const { ok, output } = await runPlan({ FAKE_DOCKER_RESTORED: 'The Shawshank Redemption' }, 'diff');
    assert.equal(ok, false);
    assert.match(output.join('\n'), /FAILED at step 5 [\s\S]*"seeded" and "restored" differ/);
  });
});
