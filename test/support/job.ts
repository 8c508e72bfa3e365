// Runs the bundled job (dist/main.js) as a child process, the way a scheduler does, and collects
// its exit, its JSON log lines and its peak memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, symlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { assertNoSecrets, registerRun, secretsOf } from './secret-scan.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const BUNDLE = join(ROOT, 'dist/main.js');
// The pinned Node 24 the image ships; the machine's own node may be older.
export const NODE = join(ROOT, 'node_modules/.bin/node');
export const FAKE_DUMP = join(ROOT, 'test/fixtures/bin/fake-dump.mjs');

export type LogLine = Record<string, unknown> & { severity: string; message: string };

export type JobResult = {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  lines: LogLine[];
  // Peak resident memory of the job process (VmHWM), in bytes.
  peakRss: number;
  ms: number;
};

export type JobOptions = {
  // Called for every log line; may return a signal to send to the job (e.g. once the dump started).
  onLine?: (line: LogLine) => NodeJS.Signals | undefined;
  // Called once the job process exists (to signal it on a condition no log line shows).
  onSpawn?: (child: ChildProcess) => void;
};

// A directory holding the fake dump tool under the given names, to put first on PATH.
export async function fakeToolDir(names: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'planb-fakebin-'));
  for (const name of names) await symlink(FAKE_DUMP, join(dir, name));
  return dir;
}

// Where a test file runs the job against the fake dump tool: `bin` holds the tool under `tools` (first
// on PATH), `work` is the file's scratch folder and `tmp` the job's TMPDIR. Made at once (node:test may
// run a file's `before` hooks side by side, so none may depend on another) and removed after the tests.
export type FakeWorkspace = { readonly bin: string; readonly work: string; readonly tmp: string };

export function useFakeWorkspace(name: string, tools: string[]): FakeWorkspace {
  const bin = mkdtempSync(join(tmpdir(), 'planb-fakebin-'));
  for (const tool of tools) symlinkSync(FAKE_DUMP, join(bin, tool));
  const workspace = { bin, work: mkdtempSync(join(tmpdir(), `planb-${name}-`)), tmp: mkdtempSync(join(tmpdir(), `planb-${name}-tmp-`)) };
  after(async () => {
    for (const dir of [workspace.bin, workspace.work, workspace.tmp]) await rm(dir, { recursive: true, force: true });
  });
  return workspace;
}

// The environment of a job that dumps with the fake tool (`args`: its --fake-… options) into a local
// bucket in the workspace; `env` adds to it or overrides it.
export function fakeJobEnv(workspace: FakeWorkspace, args: string[], env: Record<string, string>): Record<string, string> {
  return {
    PATH: `${workspace.bin}:${process.env.PATH ?? ''}`,
    TMPDIR: workspace.tmp,
    DB_HOST: '127.0.0.1',
    ...(args.length > 0 && { DB_EXTRA_ARGS: JSON.stringify(args) }),
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: join(workspace.work, 'bucket'),
    ...env,
  };
}

// Runs the job with exactly `env` (plus PATH/HOME when not given) and waits for it to exit. Fails if
// any secret of `env` appears in its output or in a callback body received meanwhile (secret-scan.ts).
export async function runJob(env: Record<string, string>, options: JobOptions = {}): Promise<JobResult> {
  const secrets = secretsOf(env);
  const unregister = registerRun(secrets);
  try {
    const result = await spawnJob(env, options);
    assertNoSecrets({ stdout: result.stdout, stderr: result.stderr }, secrets);
    return result;
  } finally {
    unregister();
  }
}

async function spawnJob(env: Record<string, string>, options: JobOptions): Promise<JobResult> {
  const started = Date.now();
  const child = spawn(NODE, [BUNDLE], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  let stdout = '';
  let stderr = '';
  let peakRss = 0;
  let buffered = '';
  const lines: LogLine[] = [];
  const sample = async () => {
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    if (kb * 1024 > peakRss) peakRss = kb * 1024;
  };
  const sampler = setInterval(() => void sample(), 50);
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    stdout += text;
    buffered += text;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const raw = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { severity: 'NOT_JSON', message: raw };
      }
      lines.push(line);
      const signal = options.onLine?.(line);
      if (signal) child.kill(signal);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => (stderr += text));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  clearInterval(sampler);
  return { code, signal, stdout, stderr, lines, peakRss, ms: Date.now() - started };
}
