// After SIGTERM the job cleans up within a grace period; when cleanup takes longer, main.ts exits on
// its own, and that exit must still say "stopped by SIGTERM" (143), never success.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeToolDir, runJob } from '../support/job.ts';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-forced-'));
});
after(() => rm(work, { recursive: true, force: true }));

test('a cleanup that outlasts the grace period after SIGTERM still exits 143, with nothing stored', async (t) => {
  // The dump tool's `--version` never answers and ignores SIGTERM: the job waits for its version probe
  // to time out and then for the probe's SIGKILL, longer together than the forced exit's delay.
  const bin = await fakeToolDir(['mongodump']);
  await writeFile(join(bin, '.version-hangs'), '');
  const bucket = join(work, 'bucket');
  // The hanging tool outlives the job (it ignores the SIGTERM it gets on the job's exit): end it here.
  t.after(async () => {
    const pid = Number(await readFile(join(bin, '.version-hanging'), 'utf8').catch(() => '0'));
    if (pid > 0) process.kill(pid, 'SIGKILL');
  });
  const result = await runJob(
    { PATH: `${bin}:${process.env.PATH ?? ''}`, DB_TYPE: 'mongodb', DB_HOST: '127.0.0.1', STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket },
    {
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (!existsSync(join(bin, '.version-hanging'))) return;
          clearInterval(poll);
          child.kill('SIGTERM');
        }, 20);
        child.once('exit', () => clearInterval(poll));
      },
    },
  );
  assert.equal(result.code, EXIT_CODES.SIGTERM.code, result.stdout);
  assert.ok(result.lines.some((line) => line.message === 'cleanup did not finish in time; exiting now'), 'the forced exit is what ended the run');
  assert.deepEqual(await readdir(bucket, { recursive: true }).catch(() => []), []);
});
