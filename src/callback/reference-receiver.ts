// A tiny, runnable receiver that shows a control plane how to take Plan B callbacks: read the raw
// body, verify it with verifyCallback, use webhook-id to process each run once, answer 204/400/401.
//   node src/callback/reference-receiver.ts --port 8080 --secret-file /run/secrets/callback
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { verifyCallback, WebhookVerificationError, type CallbackPayload, type VerifyOptions } from './verify.ts';

// A callback is a few KB; anything far larger is not one of ours.
const MAX_BODY_BYTES = 1024 * 1024;
// Remembered webhook-ids; retries of one run arrive within minutes, so a few thousand is plenty.
const MAX_REMEMBERED_IDS = 10_000;

export type ReceiverOptions = VerifyOptions & {
  // The `whsec_…` secrets to accept (all of them during a rotation).
  secrets: readonly string[];
  // Called once per webhook-id with the verified payload; a throw answers 500 so Plan B retries.
  onCallback: (payload: CallbackPayload, webhookId: string) => void | Promise<void>;
};

// An http.Server (not yet listening) that verifies, de-duplicates and hands over callbacks.
export function createReferenceReceiver(options: ReceiverOptions): Server {
  const ids: Idempotency = { done: new Set(), running: new Map() };
  return createServer((request, response) => {
    handle(request, response, options, ids).catch((error: unknown) => {
      console.error('callback handler failed:', error);
      if (!response.headersSent) answer(response, 500, 'handler failed');
      else response.destroy();
    });
  });
}

// Ids already handled, and handlers still running: a retry may arrive while the first attempt's handler
// is still at work (the sender timed out), and must wait for it rather than run it again.
type Idempotency = { done: Set<string>; running: Map<string, Promise<void>> };

async function handle(request: IncomingMessage, response: ServerResponse, options: ReceiverOptions, ids: Idempotency): Promise<void> {
  if (request.method !== 'POST') return answer(response, 405, 'POST only');
  const body = await readBody(request);
  if (body === undefined) return answer(response, 413, 'body too large');

  let payload: CallbackPayload;
  try {
    payload = verifyCallback(body, request.headers, options.secrets, options);
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
    return answer(response, error.reason === 'malformed' ? 400 : 401, error.message);
  }

  // Verified, so the id is ours: a repeat is a retry of a callback already handled.
  // A production receiver would make this a unique key in its database instead of memory.
  const id = String(request.headers['webhook-id']);
  if (ids.done.has(id)) return answer(response, 204);
  let work = ids.running.get(id);
  if (!work) {
    work = (async () => options.onCallback(payload, id))();
    ids.running.set(id, work);
  }
  try {
    await work;
  } finally {
    ids.running.delete(id);
  }
  ids.done.add(id);
  if (ids.done.size > MAX_REMEMBERED_IDS) ids.done.delete(ids.done.values().next().value as string);
  answer(response, 204);
}

// The raw bytes of the request (verification needs them exactly), or undefined when too large.
async function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function answer(response: ServerResponse, status: number, message?: string): void {
  response.writeHead(status, message === undefined ? {} : { 'content-type': 'text/plain; charset=utf-8' });
  response.end(message);
}

// Run directly: listen and print each verified callback as one JSON line.
if (import.meta.main) {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' }, 'secret-file': { type: 'string' } },
  });
  const secretFile = values['secret-file'];
  if (!secretFile) throw new Error('usage: reference-receiver.ts --secret-file FILE [--port 8080] [--host 127.0.0.1]');
  // The file holds one or more whsec_ secrets separated by white space, like CALLBACK_SECRET.
  const secrets = readFileSync(secretFile, 'utf8').split(/\s+/).filter(Boolean);
  const server = createReferenceReceiver({
    secrets,
    onCallback: (payload, webhookId) => console.log(JSON.stringify({ webhookId, type: payload.type, data: payload.data })),
  });
  server.listen(Number(values.port), values.host, () => {
    const { address, port } = server.address() as AddressInfo;
    console.error(`listening on http://${address}:${port}/`);
  });
}
