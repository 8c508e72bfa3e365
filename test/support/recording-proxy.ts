// A recording HTTP proxy on 127.0.0.1 in front of an emulator that accepts, but ignores, headers a test
// must see on the wire (azurite takes Azure's immutability-policy headers and drops them). It forwards
// every request unchanged and records its method, path, query and headers; a rule can answer chosen
// requests itself the way the real service would (e.g. a container without version-level
// immutability), or hold the emulator's answer back for a while (a slow commit).
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';

const HOST = '127.0.0.1';

// One request as the proxy saw it; `status` once answered.
export type ProxiedRequest = { method: string; path: string; query: URLSearchParams; headers: IncomingMessage['headers']; status: number | undefined };

// What to do with requests that `match`: call `onRequest`, then give `answer` instead of forwarding,
// or forward and hold the emulator's answer back for `delayMs`.
export type ProxyRule = {
  match: (request: ProxiedRequest) => boolean;
  onRequest?: () => void;
  answer?: { status: number; headers?: Record<string, string>; body: string };
  delayMs?: number;
};

export type RecordingProxy = {
  // Give this to the client instead of the emulator's address (same path layout).
  url: string;
  requests: ProxiedRequest[];
  intercept(rule: ProxyRule): void;
  stop(): Promise<void>;
};

// Starts a proxy to `target` (http://127.0.0.1:PORT).
export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: ProxiedRequest[] = [];
  const rules: ProxyRule[] = [];
  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const recorded: ProxiedRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, status: undefined };
    requests.push(recorded);
    res.once('finish', () => {
      recorded.status = res.statusCode;
    });
    const rule = rules.find((candidate) => candidate.match(recorded));
    rule?.onRequest?.();
    const answer = rule?.answer;
    if (answer) {
      for await (const chunk of req) void chunk;
      res.writeHead(answer.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(answer.body), ...answer.headers }).end(answer.body);
      return;
    }
    const forwarded = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      forwarded.once('response', resolve);
      forwarded.once('error', reject);
    });
    void pipeline(req, forwarded).catch(() => undefined); // a client that gives up: `answered` rejects
    const response = await answered;
    if (rule?.delayMs) await new Promise((resolve) => setTimeout(resolve, rule.delayMs));
    res.writeHead(response.statusCode ?? 502, response.headers);
    await pipeline(response, res);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${HOST}:${port}${upstream.pathname.replace(/\/$/, '')}`,
    requests,
    intercept: (rule) => rules.push(rule),
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
