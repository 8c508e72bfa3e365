// A throw-away azurite blob service for the Azure tests: its own free port on 127.0.0.1, its own temp
// workspace, no telemetry, stopped and removed by stop(). Nothing it does leaves the host.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { freePort } from './ports.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
// The pinned Node 24; the script's `#!/usr/bin/env node` would pick the machine's older node.
const NODE = join(ROOT, 'node_modules/.bin/node');
const AZURITE_BLOB = join(ROOT, 'node_modules/azurite/dist/src/blob/main.js');

// The emulator's well-known development account and key, published by Microsoft for Azurite.
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

// How long azurite may take to print that it listens (it is usually ready in under a second).
const START_TIMEOUT_MS = 20_000;
// How often to pick another port when the one we were given was taken before azurite bound it.
const PORT_ATTEMPTS = 5;
// Azure's container-name rule: 3–63 characters, lower-case letters, digits and single hyphens.
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

export type Azurite = {
  // The blob service URL in path style, account included: http://127.0.0.1:PORT/devstoreaccount1
  endpoint: string;
  accountName: string;
  accountKey: string;
  connectionString: string;
  // A client with the dev account's key, for setting up and checking from the test side.
  service: BlobServiceClient;
  // Creates a container (names are checked against Azure's rule first) and returns its name.
  createContainer(name: string): Promise<string>;
  stop(): Promise<void>;
};

export type AzuriteOptions = {
  // Keep blobs in memory instead of the temp workspace (faster for the benchmark's gigabytes).
  inMemory?: boolean;
};

// For `describe(name, { skip: azuriteMissing() }, …)`: false when azurite is installed, otherwise the
// reason to skip loudly; when CI is set a missing azurite throws instead, because a skip would hide it.
export function azuriteMissing(): string | false {
  if (existsSync(AZURITE_BLOB) && existsSync(NODE)) return false;
  const reason = 'azurite is not installed; run npm ci (it is a devDependency)';
  if (process.env.CI) throw new Error(`${reason} (CI is set, so this is a failure, not a skip)`);
  return reason;
}

// Starts azurite's blob service and waits until it listens.
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  const location = await mkdtemp(join(tmpdir(), 'planb-azurite-'));
  try {
    for (let attempt = 1; ; attempt += 1) {
      const port = await freePort();
      const child = spawn(NODE, [AZURITE_BLOB, ...azuriteArgs(port, location, options)], {
        cwd: location,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const outcome = await listening(child);
      if (outcome === 'listening') return handle(child, port, location);
      await stopChild(child);
      if (outcome !== 'address-in-use' || attempt >= PORT_ATTEMPTS) throw new Error(`azurite did not start: ${outcome}`);
    }
  } catch (error) {
    await rm(location, { recursive: true, force: true });
    throw error;
  }
}

function azuriteArgs(port: number, location: string, options: AzuriteOptions): string[] {
  return [
    '--blobHost', '127.0.0.1',
    '--blobPort', String(port),
    // In memory, azurite refuses --location; it still runs in the temp dir (its cwd), so anything
    // it writes is removed by stop().
    ...(options.inMemory ? ['--inMemoryPersistence'] : ['--location', location]),
    '--silent',
    // By default azurite sends usage telemetry to Microsoft; nothing may leave the host.
    '--disableTelemetry',
    // @azure/storage-blob speaks a newer REST API version than azurite 3.35 knows (2026-04-06 vs
    // 2025-11-05); the operations we use are unchanged, so the version check only gets in the way.
    '--skipApiVersionCheck',
  ];
}

// Resolves 'listening' once azurite says so, or a description of why it did not start.
async function listening(child: ChildProcess): Promise<string> {
  let output = '';
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(`no "listens" line within ${START_TIMEOUT_MS} ms; output: ${output.slice(-500)}`), START_TIMEOUT_MS);
    const finish = (outcome: string) => {
      clearTimeout(timer);
      child.stdout?.removeAllListeners('data');
      child.stderr?.removeAllListeners('data');
      child.removeAllListeners('exit');
      resolve(outcome);
    };
    const collect = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('successfully listens on')) finish('listening');
      else if (output.includes('EADDRINUSE')) finish('address-in-use');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('exit', (code, signal) => finish(output.includes('EADDRINUSE') ? 'address-in-use' : `exited (${code ?? signal}): ${output.slice(-500)}`));
    child.once('error', (error) => finish(`spawn failed: ${error.message}`));
  });
}

function handle(child: ChildProcess, port: number, location: string): Azurite {
  // Keep draining its output so a chatty azurite never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  // A test process that ends without stop() (a crash, a hung test given up on) must not leave an
  // orphaned azurite behind; its temp dir is then left for the OS.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const endpoint = `http://127.0.0.1:${port}/${DEV_ACCOUNT}`;
  const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY), {
    retryOptions: { maxTries: 1 },
  });
  return {
    endpoint,
    accountName: DEV_ACCOUNT,
    accountKey: DEV_KEY,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};BlobEndpoint=${endpoint};`,
    service,
    async createContainer(name) {
      if (!CONTAINER_NAME.test(name)) throw new Error(`"${name}" is not a valid container name (3-63 lower-case letters, digits, hyphens)`);
      await service.getContainerClient(name).create();
      return name;
    },
    async stop() {
      process.removeListener('exit', killOnExit);
      try {
        await stopChild(child);
      } finally {
        await rm(location, { recursive: true, force: true });
      }
    },
  };
}

// SIGTERM (azurite closes its server on it), SIGKILL if it is still there after a moment.
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
