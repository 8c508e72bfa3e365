// The image test, for hosts with a Docker engine. It follows the product's 5-step pipeline:
//   1. start the official database container of the image's version,
//   2. seed a small dataset (3 movies, 3 actors),
//   3. render and build the Plan B image (native platform),
//   4. run a backup with that image into a local S3-compatible server container (MinIO),
//   5. restore the stored object with the stock restore tool into a fresh database and compare.
// Everything it starts is removed at the end, also after a failure or Ctrl-C.
//
//   node deploy/images/test-image.ts NAME|--all [--dry-run] [--keep] [--id ID]
//
// --dry-run prints every command without running anything (no Docker needed): the unit tests run it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  BUILD_CONTEXT,
  ROOT,
  buildArgv,
  dockerEngineAvailable,
  imageName,
  nodeImage,
  loadInputs,
  renderImages,
  shellLine,
  type ImageSpec,
} from './render.ts';
import { ACTORS, envFlags, holdsDataset, MOVIES, RECIPES, run, waitFor, type Action, type Names, type Pipe, type Recipe, type Step } from './recipes.ts';

export { ACTORS, MOVIES, type Action, type Pipe, type Step };

// Pinned so the test means the same thing every time; override to use a mirror.
// (MinIO's community images stopped being updated in 2025; any S3-compatible server will do.)
export const DEFAULT_S3_IMAGE = 'minio/minio:RELEASE.2025-09-07T16-13-09Z';
export const DEFAULT_MC_IMAGE = 'minio/mc:RELEASE.2025-08-13T08-35-41Z';

// Enough stderr to explain a failure without flooding the terminal.
const STDERR_TAIL_CHARS = 4_000;

// The throw-away S3 server's bucket and credentials; nothing here protects anything.
const BUCKET = 'planb-test';
const S3_USER = 'planbtest';
const S3_SECRET = 'planbtestsecret';

// Everything one image's test does, in order, and what is removed afterwards.
export type Plan = { name: string; spec: ImageSpec; tag: string; steps: Step[]; cleanup: Action[] };

function namesFor(spec: ImageSpec, id: string): Names {
  const base = `planb-it-${id}`;
  return {
    network: base,
    db: `${base}-db`,
    restore: `${base}-restore`,
    s3: `${base}-s3`,
    dataVolume: `${base}-data`,
    restoreVolume: `${base}-restore-data`,
    tag: `planb-backup-${spec.dbType}:test-${id}`,
    label: `planb-image-test=${id}`,
  };
}

function recipeFor(spec: ImageSpec, names: Names, nodeVersion: string): Recipe {
  // The vendor's server image: the base itself, or (etcd) the image its tools were copied from.
  const official = spec.toolsFrom?.image ?? spec.base;
  const server = (container: string, alias: string, env: Record<string, string>, args: string[] = [], mounts: string[] = []) => [
    'docker', 'run', '--detach', '--name', container, '--network', names.network, '--network-alias', alias,
    // The hostname resolves to the container's network address inside it: a readiness check on it
    // fails while the entrypoint's socket-only/localhost-only initialisation server runs.
    '--hostname', alias, '--label', names.label, ...envFlags(env), ...mounts.flatMap((m) => ['--volume', m]), official, ...args,
  ];
  const inImage = (entrypoint: string, options: string[], args: string[]) => ['docker', 'run', '--rm', '--interactive', '--network', names.network, ...options, '--entrypoint', entrypoint, names.tag, ...args];

  return RECIPES[spec.dbType].test({ dbType: spec.dbType, names, nodeImage: nodeImage(nodeVersion, 'glibc'), startTitle: `start the official database container (${official})`, server, inImage });
}

// The single object the backup stored, from `mc ls --recursive --json`; it must be zstd-compressed.
export function parseListing(stdout: string): string {
  const keys = stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as { type?: string; key?: string })
    .filter((entry) => entry.type === 'file' && entry.key)
    .map((entry) => entry.key as string);
  if (keys.length !== 1) throw new Error(`expected exactly one object in the bucket, found ${keys.length}: ${keys.join(', ')}`);
  const [key = ''] = keys;
  if (!key.endsWith('.zst')) throw new Error(`expected a zstd-compressed object (default BACKUP_COMPRESSION), found ${key}`);
  return key;
}

// The job's stdout must be JSON lines, none of them an error.
function checkJobLog(stdout: string): string | undefined {
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) return 'the job printed no log line';
  for (const line of lines) {
    let entry: { severity?: string; message?: string };
    try {
      entry = JSON.parse(line) as { severity?: string; message?: string };
    } catch {
      return `not a JSON log line: ${line.slice(0, 200)}`;
    }
    if (typeof entry.severity !== 'string') return `log line without severity: ${line.slice(0, 200)}`;
    if (entry.severity === 'ERROR' || entry.severity === 'CRITICAL') return `the job logged ${entry.severity}: ${entry.message ?? line}`;
  }
  return undefined;
}

// The built image must run the job as the numeric non-root user with no inherited command.
function checkImageConfig(spec: ImageSpec, user: number): (stdout: string) => string | undefined {
  return (stdout) => {
    const config = JSON.parse(stdout) as { User?: string; Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[]; Labels?: Record<string, string> };
    if (config.User !== `${user}:${user}`) return `runs as "${config.User}", expected ${user}:${user}`;
    if (config.Entrypoint?.at(-1) !== '/opt/planb/main.js') return `entrypoint is ${JSON.stringify(config.Entrypoint)}`;
    if (config.Cmd && config.Cmd.length > 0) return `inherits CMD ${JSON.stringify(config.Cmd)}`;
    if (!config.Env?.includes(`DB_TYPE=${spec.dbType}`)) return `DB_TYPE=${spec.dbType} is not set`;
    if (config.Labels?.['planb.database'] !== spec.dbType) return 'the planb.database label is missing';
    return undefined;
  };
}

export type PlanOptions = {
  id: string;
  s3Image: string;
  mcImage: string;
  user: number;
  nodeVersion: string;
  keepImage: boolean;
  // Where the Dockerfile is rendered, relative to the repository root or absolute.
  buildDir: string;
};

// Where the image test renders Dockerfiles unless told otherwise.
export const DEFAULT_BUILD_DIR = 'build/images';

// The whole test of one image as data: what --dry-run prints and what a real run executes.
export function planImageTest(spec: ImageSpec, options: PlanOptions): Plan {
  const names = namesFor(spec, options.id);
  const mc = ['docker', 'run', '--rm', '--network', names.network, '-e', `MC_HOST_local=http://${S3_USER}:${S3_SECRET}@s3:9000`, options.mcImage];
  const recipe = recipeFor(spec, names, options.nodeVersion);
  const name = imageName(spec);
  const build = { name, spec, dockerfile: `${options.buildDir}/${name}/Dockerfile`, repository: names.tag, tags: [names.tag], platforms: [] };
  const fetch = [...mc, 'cat', `local/${BUCKET}/{{objectKey}}`];
  const unzstd = ['docker', 'run', '--rm', '--interactive', '--entrypoint', 'zstd', names.tag, '--decompress', '--stdout', '--quiet'];

  const steps: Step[] = [
    {
      title: recipe.startTitle,
      actions: [run([['docker', 'network', 'create', '--label', names.label, names.network]]), ...recipe.start(names.db, 'db', names.dataVolume)],
    },
    {
      title: `seed ${MOVIES.length} movies and ${ACTORS.length} actors`,
      actions: [...recipe.seed, run(recipe.snapshot(names.db, 'db', names.dataVolume), { capture: { name: 'seeded' }, check: holdsDataset })],
    },
    {
      title: `render and build the Plan B image (native platform, context ${BUILD_CONTEXT}/)`,
      actions: [
        { kind: 'render', only: name, outDir: options.buildDir },
        run([buildArgv(build, 'load', {})]),
        run([['docker', 'image', 'inspect', '--format', '{{json .Config}}', names.tag]], {
          check: { what: `the image runs ${options.user}:${options.user}, entrypoint = the job, no CMD, DB_TYPE set`, verify: checkImageConfig(spec, options.user) },
        }),
      ],
    },
    {
      title: 'back up with the image into a local S3-compatible server (read-only root, /tmp on tmpfs, no capabilities)',
      actions: [
        run([[
          'docker', 'run', '--detach', '--name', names.s3, '--network', names.network, '--network-alias', 's3', '--label', names.label,
          '-e', `MINIO_ROOT_USER=${S3_USER}`, '-e', `MINIO_ROOT_PASSWORD=${S3_SECRET}`, options.s3Image, 'server', '/data',
        ]]),
        waitFor([...mc, 'mb', '--ignore-existing', `local/${BUCKET}`]),
        run([[
          'docker', 'run', '--rm', '--network', names.network,
          '--read-only', '--tmpfs', '/tmp:rw,nosuid,nodev,size=64m', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
          ...recipe.backupMounts.flatMap((m) => ['--volume', m]),
          ...envFlags({
            ...recipe.backupEnv,
            STORAGE_TYPE: 's3', STORAGE_BUCKET: BUCKET, STORAGE_ENDPOINT: 'http://s3:9000', STORAGE_REGION: 'us-east-1',
            STORAGE_ACCESS_KEY_ID: S3_USER, STORAGE_SECRET_ACCESS_KEY: S3_SECRET, BACKUP_PATH: 'image-test/',
          }),
          names.tag,
        ]], { check: { what: 'the job exits 0 and logs JSON lines, none of them an error', verify: checkJobLog } }),
        run([[...mc, 'ls', '--recursive', '--json', `local/${BUCKET}`]], { capture: { name: 'objectKey', parse: parseListing } }),
      ],
    },
    {
      title: `restore into a fresh database with the stock restore tool and compare`,
      actions: [
        ...recipe.restore(fetch, unzstd),
        run(recipe.snapshot(names.restore, 'restore', names.restoreVolume), { capture: { name: 'restored' } }),
        { kind: 'compare', left: 'seeded', right: 'restored' },
      ],
    },
  ];

  const cleanup: Action[] = [
    run([['docker', 'rm', '--force', '--volumes', names.db, names.restore, names.s3]]),
    run([['docker', 'volume', 'rm', '--force', names.dataVolume, names.restoreVolume]]),
    run([['docker', 'network', 'rm', names.network]]),
    ...(options.keepImage ? [] : [run([['docker', 'image', 'rm', '--force', names.tag]])]),
  ];
  return { name, spec, tag: names.tag, steps, cleanup };
}

function describeAction(action: Action): string[] {
  switch (action.kind) {
    case 'render':
      return [shellLine(['node', 'deploy/images/render.ts', '--only', action.only, ...(action.outDir === DEFAULT_BUILD_DIR ? [] : ['--out', action.outDir])])];
    case 'compare':
      return [`# compare "${action.left}" with "${action.right}": equal and not empty`];
    case 'run': {
      const lines: string[] = [];
      if (action.retry) lines.push(`# retried up to ${action.retry.attempts} times, ${action.retry.intervalMs / 1000} s apart, until it succeeds`);
      if (action.check) lines.push(`# check: ${action.check.what}`);
      if (action.capture) lines.push(`# output kept as {{${action.capture.name}}}`);
      const command = action.pipe.map(shellLine).join(' \\\n  | ');
      if (action.input === undefined) lines.push(command);
      else lines.push(`${command} <<'INPUT'`, ...action.input.replace(/\n$/, '').split('\n'), 'INPUT');
      return lines;
    }
  }
}

// The plan as text: every command, copy-pasteable, step by step.
export function describePlan(plan: Plan): string {
  const out = [`# Plan B image test: ${plan.name} (${plan.spec.base}), image ${plan.tag}`];
  for (const [index, step] of plan.steps.entries()) {
    out.push(`# Step ${index + 1}/${plan.steps.length}: ${step.title}`);
    for (const action of step.actions) out.push(...describeAction(action));
  }
  out.push('# Cleanup (always, also after a failure or Ctrl-C):');
  for (const action of plan.cleanup) out.push(...describeAction(action));
  return `${out.join('\n')}\n`;
}

type Outcome = { ok: boolean; stdout: string; detail: string };

// Children of the action under way, so Ctrl-C can stop them before the cleanup.
const running = new Set<ChildProcess>();
let interrupted = false;

async function runPipe(pipe: Pipe, input: string | undefined, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const children = pipe.map(([command = '', ...args]) => spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] }));
  const stderr = children.map(() => '');
  const exits = children.map(
    (child, index) =>
      new Promise<string | undefined>((resolve) => {
        running.add(child);
        child.stderr?.setEncoding('utf8');
        child.stderr?.on('data', (text: string) => {
          stderr[index] = `${stderr[index] ?? ''}${text}`.slice(-STDERR_TAIL_CHARS);
        });
        child.once('error', (error) => resolve(`${pipe[index]?.[0]}: ${error.message}`));
        child.once('close', (code, signal) => {
          running.delete(child);
          resolve(code === 0 ? undefined : `${pipe[index]?.slice(0, 4).join(' ')} … exited ${code ?? signal}`);
        });
      }),
  );
  const links: Promise<void>[] = [];
  const first = children[0];
  if (first?.stdin) links.push(pipeline(Readable.from(input === undefined ? [] : [input]), first.stdin));
  for (let index = 1; index < children.length; index += 1) {
    const from = children[index - 1]?.stdout;
    const to = children[index]?.stdin;
    if (from && to) links.push(pipeline(from, to));
  }
  let stdout = '';
  const last = children.at(-1);
  last?.stdout?.setEncoding('utf8');
  last?.stdout?.on('data', (text: string) => {
    stdout += text;
  });
  const [failures, linkResults] = await Promise.all([Promise.all(exits), Promise.allSettled(links)]);
  const problems = failures.filter((failure): failure is string => failure !== undefined);
  // A broken link only matters when a process failed too: a consumer that is done may close early.
  if (problems.length > 0) {
    for (const result of linkResults) if (result.status === 'rejected') problems.push(`pipe: ${String(result.reason)}`);
  }
  const tails = stderr.filter((text) => text.trim() !== '').map((text) => text.trim());
  return { ok: problems.length === 0, stdout, detail: [...problems, ...tails].join('\n') };
}

const substitute = (pipe: Pipe, kept: ReadonlyMap<string, string>): Pipe =>
  pipe.map((argv) => argv.map((arg) => arg.replace(/\{\{([a-zA-Z]+)\}\}/g, (match, name: string) => kept.get(name) ?? match)));

async function execute(action: Action, kept: Map<string, string>, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  switch (action.kind) {
    case 'render':
      await renderImages({ only: [action.only], outDir: resolve(ROOT, action.outDir) });
      return undefined;
    case 'compare': {
      const left = kept.get(action.left) ?? '';
      const right = kept.get(action.right) ?? '';
      if (left === '') return `"${action.left}" is empty`;
      return left === right ? undefined : `"${action.left}" and "${action.right}" differ:\n--- ${action.left}\n${left}\n--- ${action.right}\n${right}`;
    }
    case 'run': {
      const attempts = action.retry?.attempts ?? 1;
      let last: Outcome = { ok: false, stdout: '', detail: 'not run' };
      // After Ctrl-C nothing is retried, but every command still runs once: the cleanup must happen.
      for (let attempt = 1; attempt <= attempts && (attempt === 1 || !interrupted); attempt += 1) {
        last = await runPipe(substitute(action.pipe, kept), action.input, env);
        // A failed check is a failed attempt: a server may answer before it is ready.
        const reason = last.ok && action.check ? action.check.verify(last.stdout) : undefined;
        if (reason !== undefined) last = { ok: false, stdout: last.stdout, detail: `${action.check?.what}: ${reason}` };
        if (last.ok) break;
        if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, action.retry?.intervalMs ?? 0));
      }
      if (!last.ok) return last.detail || 'failed';
      if (action.capture) {
        try {
          kept.set(action.capture.name, action.capture.parse ? action.capture.parse(last.stdout) : last.stdout.trim());
        } catch (error) {
          return error instanceof Error ? error.message : String(error);
        }
      }
      return undefined;
    }
  }
}

// Runs a plan for real: the steps in order until one fails, then always the cleanup. `env` is the
// environment of the commands (the tests put a fake docker first on its PATH).
export async function executePlan(plan: Plan, log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const kept = new Map<string, string>();
  let ok = true;
  try {
    for (const [index, step] of plan.steps.entries()) {
      log(`Step ${index + 1}/${plan.steps.length}: ${step.title}`);
      for (const action of step.actions) {
        const failure = interrupted ? 'interrupted' : await execute(action, kept, env);
        if (failure !== undefined) {
          log(`FAILED at step ${index + 1} (${step.title}):\n${failure}`);
          ok = false;
          return false;
        }
      }
      log(`  ok`);
    }
    return true;
  } finally {
    log('Cleanup');
    for (const action of plan.cleanup) {
      const failure = await execute(action, kept, env);
      // Removing what a failed run never created fails harmlessly; say so only when the run passed.
      if (failure !== undefined && ok) log(`  cleanup: ${failure.split('\n')[0]}`);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      id: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const usage = 'usage: node deploy/images/test-image.ts NAME|--all [--dry-run] [--keep] [--id ID]\n';
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const { matrix, versions } = await loadInputs();
  const known = matrix.images.map(imageName);
  const unknown = positionals.filter((name) => !known.includes(name));
  if ((!values.all && positionals.length === 0) || unknown.length > 0) {
    process.stderr.write(`${unknown.length > 0 ? `unknown image: ${unknown.join(', ')}\n` : ''}${usage}images: ${known.join(', ')}\n`);
    return 2;
  }
  const specs = matrix.images.filter((spec) => values.all || positionals.includes(imageName(spec)));
  const dryRun = values['dry-run'];
  const options: PlanOptions = {
    id: values.id ?? (dryRun ? 'dryrun' : randomBytes(4).toString('hex')),
    s3Image: process.env.PLANB_TEST_S3_IMAGE ?? DEFAULT_S3_IMAGE,
    mcImage: process.env.PLANB_TEST_MC_IMAGE ?? DEFAULT_MC_IMAGE,
    user: matrix.defaults.user,
    nodeVersion: versions.node,
    keepImage: values.keep,
    buildDir: DEFAULT_BUILD_DIR,
  };
  // One id per image, so that two images' containers never share a name.
  const plans = specs.map((spec) => planImageTest(spec, { ...options, id: specs.length > 1 ? `${options.id}-${imageName(spec).replace(/\./g, '')}` : options.id }));

  if (dryRun) {
    process.stdout.write(plans.map(describePlan).join('\n'));
    return 0;
  }
  if (!dockerEngineAvailable()) {
    process.stderr.write('no Docker engine is reachable: the image test needs one (use --dry-run to see the commands)\n');
    return 1;
  }
  if (!existsSync(join(ROOT, BUILD_CONTEXT, 'main.js'))) {
    process.stderr.write(`${BUILD_CONTEXT}/main.js is missing: run npm run build first\n`);
    return 1;
  }
  process.on('SIGINT', () => {
    interrupted = true;
    for (const child of running) child.kill('SIGTERM');
  });
  const failed: string[] = [];
  for (const plan of plans) {
    const log = (line: string) => process.stdout.write(`[${plan.name}] ${line}\n`);
    if (!(await executePlan(plan, log))) failed.push(plan.name);
    if (interrupted) break;
  }
  process.stdout.write(failed.length === 0 ? `PASSED: ${plans.map((p) => p.name).join(', ')}\n` : `FAILED: ${failed.join(', ')}\n`);
  if (interrupted) return 130;
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`test-image: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
