// The rendered Dockerfiles: they parse, they have every instruction the image contract needs, the
// render is deterministic, and the Node binary the images copy can run on every base.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DockerfileParser, type Dockerfile, type Instruction } from 'dockerfile-ast';
import { DB_TYPES, ENGINES } from '../../../src/engines/registry.ts';
import {
  AGE_GLIBC,
  ROOT,
  buildScript,
  fullImageRef,
  imageName,
  loadInputs,
  checkMatrix,
  renderImages,
  renderTemplate,
  requiredTools,
  versionFlag,
  type ImageBuild,
  type Matrix,
} from '../../../deploy/images/render.ts';
import { findBinary, requireBinaries } from '../../support/require-binary.ts';

// Every instruction a Dockerfile may hold; anything else means the render produced garbage.
const INSTRUCTIONS = new Set(['ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL', 'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR']);

let outDir: string;
let builds: ImageBuild[];
let matrix: Matrix;
let nodeVersion: string;

before(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'planb-images-'));
  builds = await renderImages({ outDir });
  const inputs = await loadInputs();
  matrix = inputs.matrix;
  nodeVersion = inputs.versions.node;
});
after(async () => {
  await rm(outDir, { recursive: true, force: true });
});

async function parsed(build: ImageBuild): Promise<{ text: string; dockerfile: Dockerfile; final: Instruction[] }> {
  const text = await readFile(build.dockerfile.startsWith('/') ? build.dockerfile : join(ROOT, build.dockerfile), 'utf8');
  const dockerfile = DockerfileParser.parse(text);
  const instructions = dockerfile.getInstructions();
  const lastFrom = instructions.findLastIndex((instruction) => instruction.getKeyword() === 'FROM');
  return { text, dockerfile, final: instructions.slice(lastFrom) };
}

const unquote = (value: string | null): string => (value ?? '').replace(/^"(.*)"$/s, '$1');

function envOf(final: Instruction[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const instruction of final) {
    if (instruction.getKeyword() !== 'ENV') continue;
    for (const property of (instruction as unknown as { getProperties(): { getName(): string; getUnescapedValue(): string | null }[] }).getProperties()) {
      env.set(property.getName(), property.getUnescapedValue() ?? '');
    }
  }
  return env;
}

function labelsOf(final: Instruction[]): Map<string, string> {
  const labels = new Map<string, string>();
  for (const instruction of final) {
    if (instruction.getKeyword() !== 'LABEL') continue;
    for (const property of (instruction as unknown as { getProperties(): { getName(): string; getUnescapedValue(): string | null }[] }).getProperties()) {
      labels.set(property.getName(), unquote(property.getUnescapedValue()));
    }
  }
  return labels;
}

function jsonArgs(instruction: Instruction | undefined): string[] | undefined {
  if (!instruction) return undefined;
  const json = instruction as unknown as { getOpeningBracket(): unknown; getClosingBracket(): unknown; getJSONStrings(): { getJSONValue(): string }[] };
  if (!json.getOpeningBracket() || !json.getClosingBracket()) return undefined;
  return json.getJSONStrings().map((arg) => arg.getJSONValue());
}

describe('rendered Dockerfiles', () => {
  test('the matrix covers PostgreSQL 14–17, MySQL 8.0 and 8.4, MariaDB 10.11 and 11.4, MongoDB 7.0 and 8.0, Redis 7.2 and 7.4, SQLite, etcd 3.5, ArangoDB 3.11 and 3.12, Cassandra 4.1 and 5.0 and SQL Server 2022', () => {
    const names = builds.map((build) => build.name);
    for (const name of [
      'postgresql-14', 'postgresql-15', 'postgresql-16', 'postgresql-17', 'mysql-8.0', 'mysql-8.4', 'mariadb-10.11', 'mariadb-11.4', 'mongodb-7.0', 'mongodb-8.0', 'redis-7.2', 'redis-7.4', 'sqlite-3',
      'etcd-3.5', 'arangodb-3.11', 'arangodb-3.12', 'cassandra-4.1', 'cassandra-5.0', 'mssql-2022',
    ]) {
      assert.ok(names.includes(name), `${name} is missing from deploy/images/recipes.ts`);
    }
    for (const type of DB_TYPES) assert.ok(builds.some((build) => build.spec.dbType === type), `DB_TYPE=${type} has no image in deploy/images/recipes.ts`);
  });

  test('every rendered Dockerfile parses into known instructions with no placeholder left', async () => {
    for (const build of builds) {
      const { text, dockerfile } = await parsed(build);
      assert.doesNotMatch(text, /\{\{|\}\}/, `${build.name}: a placeholder was not filled`);
      const keywords = dockerfile.getInstructions().map((instruction) => instruction.getKeyword());
      assert.ok(keywords.length > 10, `${build.name}: too few instructions`);
      for (const keyword of keywords) assert.ok(INSTRUCTIONS.has(keyword), `${build.name}: unknown instruction ${keyword}`);
      assert.deepEqual(dockerfile.getDirectives().map((d) => [d.getName(), d.getValue()]), [['syntax', 'docker/dockerfile:1']], `${build.name}: BuildKit syntax directive (COPY --chmod needs it)`);
    }
  });

  test('each image is built FROM the official database image of its version (or copies the vendor’s tools of that version), copies node from the official node image and age from a distribution build', async () => {
    for (const build of builds) {
      const { dockerfile } = await parsed(build);
      const froms = dockerfile.getFROMs();
      const { toolsFrom } = build.spec;
      assert.equal(froms.length, toolsFrom ? 4 : 3, `${build.name}: node, ${toolsFrom ? 'the vendor tools, ' : ''}age, then the database image`);
      const [node] = froms;
      const age = froms.at(-2);
      const base = froms.at(-1);
      assert.equal(age?.getBuildStage(), 'age');
      const ageFrom = build.spec.libc === 'musl' ? 'alpine:3.22' : 'debian:bookworm-slim';
      assert.equal(`${age?.getImageName()}:${age?.getImageTag()}`, ageFrom, `${build.name}: age from the distribution build for its C library`);
      assert.ok(
        build.spec.libc !== 'glibc' || (build.spec.glibc ?? '0').localeCompare(AGE_GLIBC, 'en', { numeric: true }) >= 0,
        `${build.name}: glibc ${build.spec.glibc} is older than the ${AGE_GLIBC} Debian's age needs`,
      );
      assert.equal(node?.getImageName(), 'node', `${build.name}: runtime from the official node image`);
      assert.equal(node?.getImageTag(), `${nodeVersion}-${build.spec.libc === 'musl' ? 'alpine' : 'bookworm-slim'}`, `${build.name}: the pinned Node version, built for the base's C library`);
      assert.equal(node?.getBuildStage(), 'node');
      assert.equal(`${base?.getRegistry() ? `${base.getRegistry()}/` : ''}${base?.getImageName()}:${base?.getImageTag()}`, build.spec.base, `${build.name}: FROM the matrix's base`);
      if (build.spec.source === 'vendor') {
        assert.ok(build.spec.note?.includes('no Docker Official Image'), `${build.name}: a vendor registry only where no Official Image exists, and the note says so`);
      } else {
        // Docker Official Images have no namespace (library/...) and are not on another registry.
        assert.equal(base?.getRegistry(), null, `${build.name}: no third-party registry`);
        assert.doesNotMatch(base?.getImageName() ?? '/', /\//, `${build.name}: an official (library) image`);
      }
      if (toolsFrom) {
        const tools = froms[1];
        assert.equal(tools?.getBuildStage(), 'tools');
        assert.ok(tools?.getImageTag()?.startsWith(`v${build.spec.dbVersion}.`), `${build.name}: the tools' tag pins the database version`);
        assert.ok(build.spec.note?.includes('distroless'), `${build.name}: the note says why the vendor image is not the base`);
      } else {
        assert.ok(base?.getImageTag()?.startsWith(build.spec.dbType === 'sqlite' ? 'bookworm' : build.spec.dbVersion), `${build.name}: the tag pins the database version`);
      }
      const copies = dockerfile.getCOPYs().map((copy) => copy.getArguments().map((arg) => arg.getValue()).join(' '));
      assert.ok(copies.includes('/usr/local/bin/node /usr/local/bin/node'), `${build.name}: copies the node binary`);
      assert.ok(copies.includes('main.js* /opt/planb/'), `${build.name}: copies the bundle`);
      assert.ok(copies.includes('/usr/bin/age /usr/local/bin/age'), `${build.name}: copies the age CLI`);
      if (toolsFrom) assert.ok(copies.includes(`${toolsFrom.paths.join(' ')} /usr/local/bin/`), `${build.name}: copies the vendor's tools`);
    }
  });

  test('each image sets DB_TYPE, DB_VERSION and CONTAINER_VERSION and points HOME and TMPDIR at /tmp', async () => {
    for (const build of builds) {
      const env = envOf((await parsed(build)).final);
      assert.equal(env.get('DB_TYPE'), build.spec.dbType, build.name);
      assert.equal(env.get('DB_VERSION'), build.spec.dbVersion, build.name);
      assert.match(env.get('CONTAINER_VERSION') ?? '', new RegExp(`^${build.spec.dbType}-${build.spec.dbVersion.replace('.', '\\.')}-\\d+\\.\\d+\\.\\d+`), build.name);
      assert.equal(env.get('HOME'), '/tmp', `${build.name}: the only writable path on a read-only root`);
      assert.equal(env.get('TMPDIR'), '/tmp', `${build.name}: credential files go to os.tmpdir()`);
    }
  });

  test('the entrypoint is the job in exec form, CMD is cleared and the stop signal is SIGTERM', async () => {
    for (const build of builds) {
      const { final } = await parsed(build);
      const entrypoints = final.filter((i) => i.getKeyword() === 'ENTRYPOINT');
      const cmds = final.filter((i) => i.getKeyword() === 'CMD');
      assert.equal(entrypoints.length, 1, build.name);
      const entrypoint = jsonArgs(entrypoints[0]);
      assert.equal(entrypoint?.[0], '/usr/local/bin/node', `${build.name}: exec form, node is PID 1 and gets the signals`);
      assert.equal(entrypoint?.at(-1), '/opt/planb/main.js', build.name);
      assert.equal(cmds.length, 1, build.name);
      assert.deepEqual(jsonArgs(cmds[0]), [], `${build.name}: the base's CMD must not reach the job`);
      assert.ok(final.indexOf(cmds[0] as Instruction) > final.indexOf(entrypoints[0] as Instruction), `${build.name}: CMD [] after ENTRYPOINT`);
      const stop = final.filter((i) => i.getKeyword() === 'STOPSIGNAL').map((i) => i.getArgumentsContent());
      assert.deepEqual(stop, ['SIGTERM'], `${build.name}: postgres and others stop with SIGINT; the job expects SIGTERM`);
      assert.deepEqual(final.filter((i) => i.getKeyword() === 'HEALTHCHECK').map((i) => i.getArgumentsContent()), ['NONE'], build.name);
    }
  });

  test('the image runs as a numeric non-root user, which owns a passwd entry with HOME in /tmp', async () => {
    for (const build of builds) {
      const { final } = await parsed(build);
      const users = final.filter((i) => i.getKeyword() === 'USER').map((i) => i.getArgumentsContent() ?? '');
      const last = users.at(-1) ?? '';
      assert.match(last, /^\d+:\d+$/, `${build.name}: numeric uid:gid, so runAsNonRoot can check it`);
      const [uid] = last.split(':').map(Number);
      assert.ok(uid !== undefined && uid > 0, `${build.name}: not root`);
      assert.equal(uid, matrix.defaults.user, build.name);
      const passwd = final.find((i) => i.getKeyword() === 'RUN' && (i.getArgumentsContent() ?? '').includes('/etc/passwd'));
      assert.match(passwd?.getArgumentsContent() ?? '', new RegExp(`:${uid}:${uid}:[^:]*:/tmp:`), build.name);
    }
  });

  test('a RUN checks, as the job user, that node, zstd, every dump tool and the restore tool of the engine work, and that the bundle exits 78 unconfigured', async () => {
    for (const build of builds) {
      const { final } = await parsed(build);
      const runs = final.filter((i) => i.getKeyword() === 'RUN');
      const verify = runs.find((i) => (i.getArgumentsContent() ?? '').includes('need '));
      assert.ok(verify, `${build.name}: no verification RUN`);
      const script = verify.getArgumentsContent() ?? '';
      const userIndex = final.findLastIndex((i) => i.getKeyword() === 'USER');
      assert.ok(final.indexOf(verify) > userIndex, `${build.name}: verification runs after USER, as the job's user`);
      assert.match(script, /set -eu/);
      assert.match(script, /node --version/);
      assert.match(script, /zstd --version/);
      assert.match(script, /age --version/);
      const flag = versionFlag(build.spec.dbType);
      for (const group of requiredTools(build.spec.dbType)) assert.ok(script.includes(`need ${flag} ${group.join(' ')};`), `${build.name}: does not check ${group.join(' or ')}`);
      assert.ok(script.includes(`need ${flag} ${ENGINES[build.spec.dbType].restoreTool};`), `${build.name}: restore tool`);
      assert.match(script, /node \/opt\/planb\/main\.js[^;]*\|\| status=\$\?/);
      assert.match(script, /-ne 78/);
    }
  });

  test('the dump, restore and probe tools checked in the image are the ones the engine registry uses', () => {
    assert.deepEqual(requiredTools('postgresql'), [['pg_dump'], ['pg_dumpall'], ['pg_restore'], ['psql']]);
    assert.deepEqual(requiredTools('mariadb'), [['mariadb-dump', 'mysqldump'], ['mariadb'], ['mariadb', 'mysql']]);
    assert.deepEqual(requiredTools('mongodb'), [['mongodump'], ['mongorestore'], ['mongosh']]);
    assert.deepEqual(requiredTools('redis'), [['redis-cli'], ['redis-server']]);
    assert.deepEqual(requiredTools('etcd'), [['etcdctl'], ['etcdutl']]);
    assert.equal(versionFlag('etcd'), 'version', 'etcdctl and etcdutl have no --version flag');
    assert.equal(versionFlag('mssql'), "'-?'", 'quoted: ? is a shell pattern');
    assert.deepEqual(requiredTools('cassandra'), [['cqlsh']]);
  });

  test('each image installs zstd, which the job uses for fast compression, with its base’s package manager', async () => {
    for (const build of builds) {
      const { final } = await parsed(build);
      const install = final.find((i) => i.getKeyword() === 'RUN' && /\b(apt-get|microdnf|apk)\b/.test(i.getArgumentsContent() ?? ''));
      const text = install?.getArgumentsContent() ?? '';
      assert.match(text, /\bzstd\b/, build.name);
      const manager = { apt: 'apt-get install', microdnf: 'microdnf install', apk: 'apk add' }[build.spec.packageManager];
      assert.ok(text.includes(manager), `${build.name}: uses ${manager}`);
      for (const extra of build.spec.packages ?? []) assert.match(text, new RegExp(`\\b${extra}\\b`), build.name);
    }
    assert.ok(builds.some((b) => b.spec.dbType === 'sqlite' && b.spec.packages?.includes('sqlite3')), 'the SQLite image installs sqlite3');
  });

  test('each image carries the OCI labels: source, revision, version, base image, and the database', async () => {
    for (const build of builds) {
      const labels = labelsOf((await parsed(build)).final);
      assert.equal(labels.get('org.opencontainers.image.source'), '${SOURCE_URL}', build.name);
      assert.equal(labels.get('org.opencontainers.image.revision'), '${REVISION}', build.name);
      assert.match(labels.get('org.opencontainers.image.version') ?? '', /^[a-z]+-[\d.]+-\d+\.\d+\.\d+/, build.name);
      assert.equal(labels.get('org.opencontainers.image.base.name'), fullImageRef(build.spec.base), build.name);
      if (build.spec.source !== 'vendor') assert.equal(labels.get('org.opencontainers.image.base.name'), `docker.io/library/${build.spec.base}`, build.name);
      assert.equal(labels.get('planb.database'), build.spec.dbType, build.name);
      assert.equal(labels.get('planb.database.version'), build.spec.dbVersion, build.name);
      assert.equal(labels.get('planb.node.version'), nodeVersion, build.name);
    }
  });

  test('rendering twice gives byte-identical Dockerfiles and the same build commands', async () => {
    const second = await mkdtemp(join(tmpdir(), 'planb-images-'));
    try {
      const again = await renderImages({ outDir: second });
      assert.equal(buildScript(again, 'check').replaceAll(second, outDir), buildScript(builds, 'check'));
      for (const name of await readdir(outDir)) {
        assert.equal(await readFile(join(second, name, 'Dockerfile'), 'utf8'), await readFile(join(outDir, name, 'Dockerfile'), 'utf8'), name);
      }
    } finally {
      await rm(second, { recursive: true, force: true });
    }
  });

  test('the build commands are multi-arch buildx builds of the dist/ context, one per image, with both tags', () => {
    const script = buildScript(builds, 'check');
    const lines = script.split('\n').filter((line) => line.startsWith('docker '));
    assert.equal(lines.length, builds.length);
    for (const [index, build] of builds.entries()) {
      const line = lines[index] ?? '';
      assert.match(line, /^docker buildx build --platform linux\/amd64,linux\/arm64 /);
      assert.ok(line.includes(`--file ${build.dockerfile}`));
      assert.ok(line.includes(`--tag planb-backup-${build.spec.dbType}:${build.spec.dbVersion} `));
      assert.ok(line.endsWith(' dist'), 'the context is dist/: the bundle only');
    }
    assert.match(buildScript(builds.slice(0, 1), 'push'), / --push dist\n$/);
    assert.doesNotMatch(buildScript(builds.slice(0, 1), 'load'), /--platform/, '--load builds the native platform only');
  });

  test('the Images table in docs/images.md lists exactly the images of the matrix, each with its base', async () => {
    const page = await readFile(join(ROOT, 'docs/images.md'), 'utf8');
    const table = page.slice(0, page.indexOf('\n## '));
    const rows = [...table.matchAll(/^\| `([^`]+)` \| `([^`]+)` \|/gm)].map(([, name, base]) => `${name} ${base}`);
    assert.deepEqual(rows.toSorted(), matrix.images.map((spec) => `${imageName(spec)} ${spec.base}`).toSorted());
  });

  test('the template refuses an unknown placeholder, and the matrix refuses an unpinned or unofficial-looking base', () => {
    assert.throws(() => renderTemplate('FROM {{NOPE}}\n', {}), /unknown placeholders: NOPE/);
    const good = structuredClone(matrix);
    assert.doesNotThrow(() => checkMatrix(good));
    const latest = structuredClone(good);
    (latest.images[0] as { base: string }).base = 'postgres:latest';
    assert.throws(() => checkMatrix(latest), /pin a version/);
    const untyped = structuredClone(good);
    (untyped.images[0] as { dbType: string }).dbType = 'oracle';
    assert.throws(() => checkMatrix(untyped), /dbType "oracle"/);
    const twice = structuredClone(good);
    twice.images.push(structuredClone(twice.images[0] as (typeof twice.images)[number]));
    assert.throws(() => checkMatrix(twice), /listed twice/);
    assert.equal(imageName({ dbType: 'mariadb', dbVersion: '11.4' }), 'mariadb-11.4');
  });
});

// `objdump -p` lists the shared libraries a binary needs and the symbol versions it needs from each.
function dynamicNeeds(binary: string): { needed: string[]; versions: Map<string, string[]> } {
  const text = execFileSync('objdump', ['-p', binary], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const needed = [...text.matchAll(/^\s+NEEDED\s+(\S+)$/gm)].map((m) => m[1] ?? '');
  const versions = new Map<string, string[]>();
  let library = '';
  for (const line of text.split('\n')) {
    const from = /^\s+required from (\S+):$/.exec(line);
    if (from) library = from[1] ?? '';
    const version = /^\s+0x[0-9a-f]+ 0x[0-9a-f]+ \d+ (\S+)$/.exec(line);
    if (version && library) versions.set(library, [...(versions.get(library) ?? []), version[1] ?? '']);
  }
  return { needed, versions };
}

function newest(versions: readonly string[], prefix: string): string {
  const numbers = versions.filter((v) => v.startsWith(prefix)).map((v) => v.slice(prefix.length));
  return numbers.sort(compareVersions).at(-1) ?? '0';
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i += 1) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

describe('the node binary the images copy', () => {
  // The pinned npm `node` package installs the same official linux build the node:<version> image ships.
  const binary = realpathSync(join(ROOT, 'node_modules/.bin/node'));

  test('needs only the C and C++ runtime libraries that every glibc base has', (t) => {
    if (!requireBinaries(t, ['objdump'])) return;
    const { needed } = dynamicNeeds(binary);
    const allowed = /^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-[\w-]+\.so\.\d)$/;
    assert.ok(needed.length > 0, 'objdump found no NEEDED entry: not a dynamic binary?');
    for (const library of needed) assert.match(library, allowed, `node needs ${library}, which a base may lack`);
  });

  test('needs no newer glibc and libstdc++ symbol versions than the oldest base in the matrix provides', (t) => {
    if (!requireBinaries(t, ['objdump'])) return;
    assert.ok(findBinary('objdump'));
    const { versions } = dynamicNeeds(binary);
    const all = [...versions.values()].flat();
    const glibc = newest(all, 'GLIBC_');
    const glibcxx = newest(all, 'GLIBCXX_');
    assert.ok(compareVersions(glibc, '2.17') >= 0, `parsed GLIBC_${glibc}: objdump output not understood`);
    for (const spec of matrix.images.filter((s) => s.libc === 'glibc')) {
      assert.ok(compareVersions(glibc, spec.glibc ?? '0') <= 0, `${imageName(spec)}: node needs GLIBC_${glibc}, ${spec.os} has ${spec.glibc}`);
      assert.ok(compareVersions(glibcxx, spec.glibcxx ?? '0') <= 0, `${imageName(spec)}: node needs GLIBCXX_${glibcxx}, ${spec.os} has ${spec.glibcxx}`);
    }
  });
});
