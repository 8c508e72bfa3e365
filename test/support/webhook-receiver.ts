// A scriptable webhook receiver on 127.0.0.1 for callback tests: records every request's raw body and
// headers, and answers from a script (e.g. 500, 500, 200), by resetting the connection, or never.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { scanCallbackBody } from './secret-scan.ts';

// One scripted answer: a status, a status with headers and body, a dropped connection, or silence.
export type Answer = number | { status: number; headers?: Record<string, string>; body?: string } | 'reset' | 'hang';

// What the receiver saw.
export type ReceivedRequest = {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  // performance.now() when the body had fully arrived.
  receivedAt: number;
};

export type WebhookReceiver = {
  url: string;
  requests: ReceivedRequest[];
  close: () => Promise<void>;
};

// Starts a receiver that gives `answers` in order, then `otherwise` (default 204) for ever.
export async function startWebhookReceiver(options: { answers?: readonly Answer[]; otherwise?: Answer } = {}): Promise<WebhookReceiver> {
  const script = [...(options.answers ?? [])];
  const otherwise = options.otherwise ?? 204;
  const requests: ReceivedRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      scanCallbackBody(Buffer.concat(chunks).toString('utf8'));
      requests.push({
        method: request.method ?? '',
        path: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks),
        receivedAt: performance.now(),
      });
      reply(response, script.shift() ?? otherwise);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/planb`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

// A loopback URL where nothing listens (connection refused): a receiver that is down.
export async function downUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  return `http://127.0.0.1:${port}/hooks/planb`;
}

function reply(response: ServerResponse, answer: Answer): void {
  if (answer === 'hang') return;
  if (answer === 'reset') {
    response.socket?.destroy();
    return;
  }
  const { status, headers = {}, body = '' } = typeof answer === 'number' ? { status: answer } : answer;
  response.writeHead(status, headers);
  response.end(body);
}
