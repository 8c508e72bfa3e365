// Renders Dockerfile.template once per image listed in deploy/images/recipes.ts (each DB_TYPE's `images`) into
// build/images/<name>/Dockerfile, then prints (or, with --build on a host with a Docker engine, runs)
// the `docker buildx build` commands, multi-arch by default.
//
//   node deploy/images/render.ts [--out DIR] [--only NAME[,NAME]] [--registry PREFIX] [--push | --load] [--build]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DB_TYPES, ENGINES } from '../../src/engines/registry.ts';
import type { DbConfig, DbType } from '../../src/engines/types.ts';
import { RECIPES } from './recipes.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const TEMPLATE_PATH = join(ROOT, 'Dockerfile.template');
// Where the images are listed, for messages and the generated Dockerfiles' header.
export const IMAGES_SOURCE = 'deploy/images/recipes.ts';
export const DEFAULT_OUT_DIR = join(ROOT, 'build/images');
// The build context: the bundle and nothing else (no node_modules, no sources, no secrets).
export const BUILD_CONTEXT = 'dist';

// C libraries a base can have; the node binary we copy must be built for the same one.
export const LIBCS = ['glibc', 'musl'] as const;
export type Libc = (typeof LIBCS)[number];

// Package managers of the official bases: Debian/Ubuntu, Oracle Linux slim (MySQL), Alpine.
export const PACKAGE_MANAGERS = ['apt', 'microdnf', 'apk'] as const;
export type PackageManager = (typeof PACKAGE_MANAGERS)[number];

// What every image adds to its base: zstd (the fast compressor the job prefers) and the C++ runtime
// the node binary links (usually already there: apt and microdnf are themselves C++ programs).
const RUNTIME_PACKAGES: Record<PackageManager, readonly string[]> = {
  apt: ['zstd', 'libstdc++6'],
  microdnf: ['zstd', 'libstdc++'],
  apk: ['zstd', 'libstdc++', 'libgcc'],
};

// Where the age CLI comes from, per C library: a distribution's own build, copied into the image.
// Debian 12's age 1.1.1 needs glibc symbols up to this version (objdump -T); every glibc base must have it.
export const AGE_GLIBC = '2.34';
const AGE_SOURCE: Record<Libc, { image: string; install: string; note: string }> = {
  glibc: {
    image: 'debian:bookworm-slim',
    install: 'export DEBIAN_FRONTEND=noninteractive; apt-get update && apt-get install -y --no-install-recommends age',
    note: `Debian 12's age 1.1.1 needs glibc ${AGE_GLIBC} or newer`,
  },
  musl: { image: 'alpine:3.22', install: 'apk add --no-cache age', note: "Alpine's age, built for musl" },
};

// What every image shares: its platforms, the job's numeric uid (not root) and the repository name prefix.
export const IMAGE_DEFAULTS = { platforms: ['linux/amd64', 'linux/arm64'], user: 10001, repositoryPrefix: 'planb-backup-' };

// One version of a DB_TYPE's image, as its entry in deploy/images/recipes.ts lists it.
export type ImageVersion = {
  dbVersion: string;
  // The official image and tag, e.g. postgres:17-bookworm.
  base: string;
  os: string;
  libc: Libc;
  // The base's glibc version and newest GLIBCXX symbol version (glibc bases only), checked
  // against what the node binary needs.
  glibc?: string;
  glibcxx?: string;
  packageManager: PackageManager;
  // Extra packages this base needs (SQLite: the sqlite3 shell).
  packages?: string[];
  // Where the base comes from: a Docker Official Image (the default), or the vendor's own registry
  // when the vendor publishes no Official Image (SQL Server: mcr.microsoft.com).
  source?: 'docker-official' | 'vendor';
  // The vendor's image the tools are copied from, when it cannot be the base itself (etcd's images are
  // distroless: no shell, no package manager, nothing the build check or the job could run in).
  toolsFrom?: { image: string; paths: string[] };
  // Directories put in front of PATH (SQL Server ships sqlcmd in /opt/mssql-tools18/bin).
  path?: string[];
  platforms?: string[];
  // Why the base is what it is, where that is not plain (required for a vendor registry or tools copied from another image).
  note?: string;
};

// One (DB_TYPE, version) image.
export type ImageSpec = ImageVersion & { dbType: DbType };

// Every image, with what they share.
export type Matrix = {
  defaults: { platforms: string[]; user: number; repositoryPrefix: string };
  images: ImageSpec[];
};

// What the build of one image needs: where its Dockerfile is and how to tag it.
export type ImageBuild = {
  name: string;
  spec: ImageSpec;
  dockerfile: string;
  repository: string;
  tags: string[];
  platforms: string[];
};

// Versions that go into every image: the job's own and the Node runtime's.
export type Versions = { planb: string; node: string };

// The image name used for folders and on the command line, e.g. postgresql-17.
export function imageName(spec: Pick<ImageSpec, 'dbType' | 'dbVersion'>): string {
  return `${spec.dbType}-${spec.dbVersion}`;
}

// CONTAINER_VERSION and the OCI version label: database, its version, and the job's version.
export function containerVersion(spec: ImageSpec, versions: Versions): string {
  return `${spec.dbType}-${spec.dbVersion}-${versions.planb}`;
}

// The official Node image the runtime is copied from: Debian-built (glibc) or Alpine (musl).
export function nodeImage(nodeVersion: string, libc: Libc): string {
  return libc === 'glibc' ? `node:${nodeVersion}-bookworm-slim` : `node:${nodeVersion}-alpine`;
}

// Docker Hub's official images live in library/: the OCI base.name label wants the full reference.
export function fullImageRef(image: string): string {
  const [first = ''] = image.split('/');
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return image;
  return image.includes('/') ? `docker.io/${image}` : `docker.io/library/${image}`;
}

// Checks the image list; every problem is reported at once.
export function checkMatrix(matrix: Matrix): Matrix {
  const problems: string[] = [];
  const names = new Set<string>();
  if (!Number.isInteger(matrix.defaults?.user) || matrix.defaults.user <= 0) problems.push('defaults.user must be a non-root numeric uid');
  if (!Array.isArray(matrix.defaults?.platforms) || matrix.defaults.platforms.length === 0) problems.push('defaults.platforms must list platforms');
  if (!Array.isArray(matrix.images) || matrix.images.length === 0) problems.push('images must list at least one image');
  for (const [index, spec] of (matrix.images ?? []).entries()) {
    const where = `images[${index}]`;
    if (!(DB_TYPES as readonly string[]).includes(spec.dbType)) problems.push(`${where}.dbType "${spec.dbType}" is not one of ${DB_TYPES.join(', ')}`);
    if (!/^[0-9][0-9A-Za-z.]*$/.test(spec.dbVersion ?? '')) problems.push(`${where}.dbVersion "${spec.dbVersion}" is not a version`);
    const tag = /^[a-z0-9][a-z0-9._/-]*:([A-Za-z0-9_][A-Za-z0-9._-]*)$/.exec(spec.base ?? '')?.[1];
    if (tag === undefined) problems.push(`${where}.base "${spec.base}" must be image:tag`);
    else if (tag === 'latest') problems.push(`${where}.base must pin a version, not latest`);
    if (!(LIBCS as readonly string[]).includes(spec.libc)) problems.push(`${where}.libc must be one of ${LIBCS.join(', ')}`);
    if (spec.libc === 'glibc' && !/^\d+\.\d+$/.test(spec.glibc ?? '')) problems.push(`${where}.glibc must give the base's glibc version`);
    if (spec.libc === 'glibc' && !/^\d+\.\d+\.\d+$/.test(spec.glibcxx ?? '')) problems.push(`${where}.glibcxx must give the newest GLIBCXX version of the base's libstdc++`);
    if (!(PACKAGE_MANAGERS as readonly string[]).includes(spec.packageManager)) problems.push(`${where}.packageManager must be one of ${PACKAGE_MANAGERS.join(', ')}`);
    if (spec.toolsFrom !== undefined) {
      const toolsTag = /^[a-z0-9][a-z0-9._/-]*:([A-Za-z0-9_][A-Za-z0-9._-]*)$/.exec(spec.toolsFrom.image ?? '')?.[1];
      if (toolsTag === undefined || toolsTag === 'latest') problems.push(`${where}.toolsFrom.image must be image:tag with a pinned version`);
      if (!Array.isArray(spec.toolsFrom.paths) || spec.toolsFrom.paths.length === 0 || !spec.toolsFrom.paths.every((p) => /^\/[A-Za-z0-9._/-]+$/.test(p))) {
        problems.push(`${where}.toolsFrom.paths must list absolute paths`);
      }
    }
    if (spec.path !== undefined && !spec.path.every((p) => /^\/[A-Za-z0-9._/-]+$/.test(p))) problems.push(`${where}.path must list absolute directories`);
    const name = imageName(spec);
    if (names.has(name)) problems.push(`${where}: ${name} is listed twice`);
    names.add(name);
  }
  if (problems.length > 0) throw new Error(`invalid images in ${IMAGES_SOURCE}:\n  - ${problems.join('\n  - ')}`);
  return matrix;
}

// Every DB_TYPE's images from deploy/images/recipes.ts, in its order.
export function listImages(): Matrix {
  const images = Object.entries(RECIPES).flatMap(([dbType, recipe]) => recipe.images.map((version): ImageSpec => ({ dbType: dbType as DbType, ...version })));
  return { defaults: IMAGE_DEFAULTS, images };
}

// The images, the template and the versions, read from the repository.
export async function loadInputs(): Promise<{ matrix: Matrix; template: string; versions: Versions }> {
  const [template, packageText] = await Promise.all([
    readFile(TEMPLATE_PATH, 'utf8'),
    readFile(join(ROOT, 'package.json'), 'utf8'),
  ]);
  const pkg = JSON.parse(packageText) as { version: string; devDependencies?: Record<string, string> };
  // The image ships the very Node the tests run on: the pinned `node` devDependency.
  const node = pkg.devDependencies?.node ?? '';
  if (!/^\d+\.\d+\.\d+$/.test(node)) throw new Error(`package.json devDependencies.node must pin an exact version, found "${node}"`);
  return { matrix: checkMatrix(listImages()), template, versions: { planb: pkg.version, node } };
}

// The tools the image must have, as groups of alternatives (any one of a group will do): the
// engine's dump tools for one database and for all databases, its restore tool, then the clients of
// its probes (the database's size; the list of databases for DB_NAMES=*).
export function requiredTools(dbType: DbType): string[][] {
  const engine = ENGINES[dbType];
  const db = (allDatabases: boolean): DbConfig => ({
    type: dbType, host: undefined, port: undefined, name: undefined, username: undefined, password: undefined,
    tls: undefined, tlsCaFile: undefined, allDatabases, extraArgs: [], sqliteQuickCheck: true,
  });
  const probes = [engine.size(db(false)), ...(engine.discover ? [engine.discover(db(false))] : [])];
  const groups = [[...engine.tools(db(false))], [...engine.tools(db(true))], [engine.restoreTool], ...probes.map((probe) => [...probe.tools])];
  const seen = new Set<string>();
  return groups.filter((group) => {
    const key = group.join(' ');
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// The argument that makes the engine's tools print their version (quoted for the shell).
export function versionFlag(dbType: DbType): string {
  const engine = ENGINES[dbType];
  const [flag = '--version'] = engine.versionArgs ?? [];
  return /^[A-Za-z0-9-]+$/.test(flag) ? flag : `'${flag}'`;
}

function installCommand(manager: PackageManager, packages: readonly string[]): string {
  const list = packages.join(' ');
  switch (manager) {
    case 'apt':
      return `export DEBIAN_FRONTEND=noninteractive; apt-get update && apt-get install -y --no-install-recommends ${list} && rm -rf /var/lib/apt/lists/*`;
    case 'microdnf':
      return `microdnf install -y --nodocs --setopt=install_weak_deps=0 ${list} && microdnf clean all`;
    case 'apk':
      return `apk add --no-cache ${list}`;
  }
}

// The template's placeholders and their values for one image.
export function templateValues(spec: ImageSpec, versions: Versions, user: number): Record<string, string> {
  return {
    GENERATED_FROM: `Rendered from Dockerfile.template and ${IMAGES_SOURCE} by deploy/images/render.ts: edit those, not this file.`,
    IMAGE_NAME: imageName(spec),
    DB_TYPE: spec.dbType,
    DB_VERSION: spec.dbVersion,
    CONTAINER_VERSION: containerVersion(spec, versions),
    BASE_IMAGE: spec.base,
    BASE_IMAGE_REF: fullImageRef(spec.base),
    NODE_IMAGE: nodeImage(versions.node, spec.libc),
    AGE_IMAGE: AGE_SOURCE[spec.libc].image,
    AGE_INSTALL: AGE_SOURCE[spec.libc].install,
    AGE_NOTE: AGE_SOURCE[spec.libc].note,
    NODE_LIBC: spec.libc,
    NODE_VERSION: versions.node,
    INSTALL_PACKAGES: installCommand(spec.packageManager, [...RUNTIME_PACKAGES[spec.packageManager], ...(spec.packages ?? [])]),
    VERIFY_TOOLS: requiredTools(spec.dbType).map((group) => `need ${versionFlag(spec.dbType)} ${group.join(' ')};`).join(' '),
    TOOLS_STAGE: spec.toolsFrom ? `\n# The vendor's image, used only as the source of its client tools (see the note on its image in recipes.ts).\nFROM ${spec.toolsFrom.image} AS tools` : '',
    TOOLS_COPY: spec.toolsFrom ? `COPY --from=tools ${spec.toolsFrom.paths.join(' ')} /usr/local/bin/` : '',
    EXTRA_ENV: spec.path ? `ENV PATH=${spec.path.join(':')}:$PATH` : '',
    UID: String(user),
  };
}

// Fills the template's {{NAME}} placeholders; an unknown or unfilled placeholder is an error.
export function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const unknown = new Set<string>();
  const rendered = template.replace(/\{\{([A-Z_]+)\}\}/g, (_match, name: string) => {
    const value = values[name];
    if (value === undefined) {
      unknown.add(name);
      return '';
    }
    return value;
  });
  if (unknown.size > 0) throw new Error(`Dockerfile.template uses unknown placeholders: ${[...unknown].join(', ')}`);
  if (rendered.includes('{{')) throw new Error('Dockerfile.template has a malformed placeholder (only {{UPPER_CASE}} names are filled)');
  return rendered;
}

// How the build commands publish what they build.
export type BuildMode = 'check' | 'load' | 'push';

// The `docker buildx build` argv for one image. `buildArgs` are the SOURCE_URL/REVISION values.
export function buildArgv(build: ImageBuild, mode: BuildMode, buildArgs: Readonly<Record<string, string>>): string[] {
  return [
    'docker', 'buildx', 'build',
    // --load can only load one platform into the local engine: the native one.
    ...(mode === 'load' ? [] : ['--platform', build.platforms.join(',')]),
    '--file', build.dockerfile,
    ...Object.entries(buildArgs).flatMap(([name, value]) => ['--build-arg', `${name}=${value}`]),
    ...build.tags.flatMap((tag) => ['--tag', tag]),
    ...(mode === 'load' ? ['--load'] : mode === 'push' ? ['--push'] : []),
    BUILD_CONTEXT,
  ];
}

// One argument quoted for a POSIX shell; `${NAME}` references are kept live in double quotes.
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_/.:,=@%+-]+$/.test(arg)) return arg;
  if (/^[^"\\`]*$/.test(arg) && /\$\{[A-Z_]+\}/.test(arg) && !/\$(?!\{[A-Z_]+\})/.test(arg)) return `"${arg}"`;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

// An argv as one copy-pasteable shell line.
export function shellLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

export type RenderOptions = {
  outDir?: string;
  only?: readonly string[];
  registry?: string;
};

// Writes one Dockerfile per selected image and returns what is needed to build each.
export async function renderImages(options: RenderOptions = {}): Promise<ImageBuild[]> {
  const { matrix, template, versions } = await loadInputs();
  const outDir = resolve(options.outDir ?? DEFAULT_OUT_DIR);
  const known = matrix.images.map(imageName);
  const unknown = (options.only ?? []).filter((name) => !known.includes(name));
  if (unknown.length > 0) throw new Error(`unknown image ${unknown.join(', ')}; known: ${known.join(', ')}`);
  const selected = matrix.images.filter((spec) => !options.only?.length || options.only.includes(imageName(spec)));
  const prefix = options.registry ? `${options.registry.replace(/\/+$/, '')}/` : '';
  const builds: ImageBuild[] = [];
  for (const spec of selected) {
    const name = imageName(spec);
    const file = join(outDir, name, 'Dockerfile');
    await mkdir(join(outDir, name), { recursive: true });
    await writeFile(file, renderTemplate(template, templateValues(spec, versions, matrix.defaults.user)));
    const repository = `${prefix}${matrix.defaults.repositoryPrefix}${spec.dbType}`;
    builds.push({
      name,
      spec,
      dockerfile: displayPath(file),
      repository,
      tags: [`${repository}:${spec.dbVersion}`, `${repository}:${spec.dbVersion}-${versions.planb}`],
      platforms: spec.platforms ?? matrix.defaults.platforms,
    });
  }
  return builds;
}

// Paths inside the repository are printed relative to it: the commands run from the repository root.
function displayPath(file: string): string {
  const rel = relative(ROOT, file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel;
}

// The printed build script: the commands for every image, runnable from the repository root.
export function buildScript(builds: readonly ImageBuild[], mode: BuildMode): string {
  const lines = [
    '#!/bin/sh',
    `# Builds ${builds.length} Plan B image(s). Run from the repository root after \`npm run build\` (the context is ${BUILD_CONTEXT}/).`,
    '# Multi-platform builds need a buildx builder that can do them: docker buildx create --use --name planb',
    'set -eu',
    'SOURCE_URL="${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}"',
    'REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}"',
  ];
  for (const build of builds) {
    lines.push(`# ${build.name}: ${build.spec.base} (${build.spec.os})`);
    lines.push(shellLine(buildArgv(build, mode, { SOURCE_URL: '${SOURCE_URL}', REVISION: '${REVISION}' })));
  }
  return `${lines.join('\n')}\n`;
}

function gitOutput(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return ''; // not a git checkout, or no remote: the label stays empty
  }
}

// True when a Docker engine answers (the CLI alone is not enough).
export function dockerEngineAvailable(): boolean {
  return spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      only: { type: 'string' },
      registry: { type: 'string' },
      push: { type: 'boolean', default: false },
      load: { type: 'boolean', default: false },
      build: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: node deploy/images/render.ts [--out DIR] [--only NAME[,NAME]] [--registry PREFIX] [--push | --load] [--build]\n');
    return 0;
  }
  if (values.push && values.load) throw new Error('--push and --load exclude each other');
  if (values.push && !values.registry) throw new Error('--push needs --registry (e.g. ghcr.io/acme or REGION-docker.pkg.dev/PROJECT/planb)');
  const mode: BuildMode = values.push ? 'push' : values.load ? 'load' : 'check';
  const builds = await renderImages({
    outDir: values.out,
    only: values.only?.split(',').map((name) => name.trim()).filter(Boolean),
    registry: values.registry,
  });
  process.stdout.write(buildScript(builds, mode));
  if (!values.build) return 0;

  if (!dockerEngineAvailable()) {
    process.stderr.write('no Docker engine is reachable here: the commands above are what --build would run on a Docker host\n');
    return 1;
  }
  const buildArgs = { SOURCE_URL: process.env.SOURCE_URL ?? gitOutput(['remote', 'get-url', 'origin']), REVISION: process.env.REVISION ?? gitOutput(['rev-parse', 'HEAD']) };
  for (const build of builds) {
    const [command = 'docker', ...args] = buildArgv(build, mode, buildArgs);
    process.stderr.write(`building ${build.name}\n`);
    const result = spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' });
    if (result.status !== 0) {
      process.stderr.write(`build of ${build.name} failed (exit ${result.status ?? result.signal})\n`);
      return 1;
    }
  }
  return 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`render-images: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(2);
    },
  );
}
