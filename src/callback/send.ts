// Delivers the signed callback: one body, signed afresh on every attempt, POSTed with got; retried on
// network errors, 408, 429 and 5xx with exponential backoff and jitter (honouring Retry-After);
// stopped by 410, any other 4xx or a redirect; bounded by the run's deadline signal.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { got, RequestError, type PlainResponse } from 'got';
import type { CallbackConfig } from '../config.ts';
import { CallbackError, DeadlineError, InterruptedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RunReport, SummaryReport } from '../report.ts';
import { scrubSecrets, withoutCredentials } from '../redact.ts';
import { buildPayload, buildSummaryPayload, clip, type CallbackPayload } from './payload.ts';
import { signatureHeader } from './sign.ts';
import { PRODUCT, VERSION } from './version.ts';

// How long to wait between attempts. Production defaults; tests pass small ones.
export type Backoff = {
  // First retry waits between baseMs/2 and baseMs; each further retry doubles that.
  baseMs: number;
  // No backoff wait is longer than this.
  capMs: number;
  // A Retry-After longer than this ends delivery: the receiver is down for longer than a job waits.
  maxRetryAfterMs: number;
};

// 1 s, 2 s, 4 s … 30 s: five retries fit in about a minute, well inside any sensible job deadline.
export const DEFAULT_BACKOFF: Backoff = { baseMs: 1000, capMs: 30_000, maxRetryAfterMs: 120_000 };

export type SendOptions = {
  // The run's remaining deadline: when it aborts, delivery stops (in flight or while waiting).
  signal: AbortSignal;
  log: Logger;
  backoff?: Partial<Backoff>;
  // Every literal secret of the run (Config.secrets), kept out of the payload and the log as well.
  secrets?: readonly string[];
  // Clock for webhook-timestamp, in ms since the epoch (tests step it; default Date.now).
  now?: () => number;
};

// Headers the signature depends on, or that frame the body: CALLBACK_HEADERS cannot replace them.
const RESERVED_HEADERS = new Set([
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
  'content-type',
  'content-length',
  'transfer-encoding',
  'user-agent',
  'host',
  'connection',
]);
// Transport errors that no retry can heal: a bad URL or a certificate the receiver must fix.
const PERMANENT_ERROR_CODES = new Set([
  'ERR_INVALID_URL',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);
// Enough of a receiver's answer to explain a refusal in the log, not enough to flood it.
const MAX_RESPONSE_SNIPPET_BYTES = 200;
// Of a receiver's answer we read no more than this: a huge or endless body must not grow the job.
const MAX_RESPONSE_BYTES = 4096;
// Shorter CALLBACK_HEADERS values (`1`, `json`) are not scrubbed from texts; longer ones might be keys.
const MIN_HIDDEN_HEADER_LENGTH = 8;

type Attempt =
  | { result: 'delivered'; status: number }
  | { result: 'retry'; status: number | undefined; problem: string; retryAfterMs?: number | undefined }
  | { result: 'stop'; status: number | undefined; problem: string };

// Sends the run's callback to config.url. Resolves once a 2xx answer arrives; rejects with a
// CallbackError (attempts, last status) when the receiver refuses, retries run out, or the signal aborts.
export async function sendCallback(config: CallbackConfig, report: RunReport, options: SendOptions): Promise<void> {
  await deliver(config, report.runId, (secrets) => buildPayload(report, { secrets }), options);
}

// Sends the summary of a run over several databases (DB_NAMES), the same way as sendCallback.
export async function sendSummaryCallback(config: CallbackConfig, summary: SummaryReport, options: SendOptions): Promise<void> {
  await deliver(config, summary.runId, (secrets) => buildSummaryPayload(summary, { secrets }), options);
}

// Signs and POSTs one payload, retrying as described at the top; `payload` gets every secret to keep out.
async function deliver(config: CallbackConfig, runId: string, payload: (secrets: readonly string[]) => CallbackPayload, options: SendOptions): Promise<void> {
  const { signal, log } = options;
  const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  const now = options.now ?? Date.now;
  const target = withoutCredentials(config.url);
  // Extra headers often carry an API key (`Bearer <key>`: the key alone too); short words are not keys.
  const hidden = [
    ...config.secrets,
    ...(options.secrets ?? []),
    ...Object.values(config.headers).flatMap((value) => [value, ...value.split(/\s+/)]).filter((value) => value.length >= MIN_HIDDEN_HEADER_LENGTH),
  ];
  const conceal = (text: string): string => scrubSecrets(text.replaceAll(config.url, target), hidden);

  const body = JSON.stringify(payload(hidden));
  const id = webhookId(runId);
  const headers = extraHeaders(config.headers, log);
  const maxAttempts = config.retries + 1;
  // No keep-alive: attempts are seconds apart, and an idle pooled socket must not outlive the run.
  const agent = { http: new HttpAgent({ keepAlive: false }), https: new HttpsAgent({ keepAlive: false }) };
  const facts = { url: target, webhookId: id, bytes: Buffer.byteLength(body) };

  let last: Attempt | undefined;
  try {
    for (let attempt = 1; ; attempt += 1) {
      if (signal.aborted) throw undelivered(target, attempt - 1, last, stopReason(signal));

      const timestamp = Math.floor(now() / 1000);
      const started = performance.now();
      log.debug({ callback: { ...facts, attempt } }, 'sending callback');
      last = await post(config, body, {
        ...headers,
        'content-type': 'application/json',
        'user-agent': `${PRODUCT}/${VERSION}`,
        'webhook-id': id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signatureHeader(config.secrets, id, timestamp, body),
      }, { signal, agent, conceal });
      const line = { ...facts, attempt, maxAttempts, status: last.status, ms: Math.round(performance.now() - started) };

      if (last.result === 'delivered') {
        log.info({ callback: line }, `callback delivered (HTTP ${last.status}, attempt ${attempt})`);
        return;
      }
      if (signal.aborted) throw undelivered(target, attempt, last, stopReason(signal));
      if (last.result === 'stop') {
        log.warn({ callback: { ...line, problem: last.problem } }, `callback refused, not retrying: ${last.problem}`);
        throw undelivered(target, attempt, last, 'not retried');
      }
      if (attempt >= maxAttempts) {
        log.warn({ callback: { ...line, problem: last.problem } }, `callback attempt ${attempt} failed: ${last.problem}`);
        throw undelivered(target, attempt, last, `retries exhausted (CALLBACK_RETRIES=${config.retries})`);
      }
      if (last.retryAfterMs !== undefined && last.retryAfterMs > backoff.maxRetryAfterMs) {
        log.warn({ callback: { ...line, problem: last.problem, retryAfterMs: last.retryAfterMs } }, `callback attempt ${attempt} failed: ${last.problem}`);
        throw undelivered(target, attempt, last, `the receiver asked to wait ${Math.ceil(last.retryAfterMs / 1000)} s, more than ${backoff.maxRetryAfterMs / 1000} s`);
      }
      const delayMs = Math.max(backoffDelay(attempt, backoff), last.retryAfterMs ?? 0);
      log.warn({ callback: { ...line, problem: last.problem, delayMs } }, `callback attempt ${attempt} failed: ${last.problem}; retrying in ${delayMs} ms`);
      try {
        await sleep(delayMs, undefined, { signal });
      } catch (error) {
        if (!signal.aborted) throw error;
        throw undelivered(target, attempt, last, stopReason(signal));
      }
    }
  } finally {
    agent.http.destroy();
    agent.https.destroy();
  }
}

// The webhook-id of a run: the same on every attempt, so the receiver can drop duplicates.
export function webhookId(runId: string): string {
  return `msg_${runId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

// How long to wait before retry number `retry` (1-based): "equal jitter", i.e. between half and all
// of min(cap, base × 2^(retry-1)), so concurrent jobs spread out but never retry immediately.
export function backoffDelay(retry: number, backoff: Pick<Backoff, 'baseMs' | 'capMs'>, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

// A Retry-After header (delay-seconds or an HTTP date) in milliseconds from now; undefined if absent
// or unreadable. A date in the past means "now".
export function parseRetryAfter(value: string | undefined, nowMs: number = Date.now()): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Every HTTP-date form starts with the day's name; this keeps Date.parse's leniency out.
  const at = /^[A-Za-z]{3}/.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

// One POST of the exact body, classified into delivered / retry / stop. Never throws for HTTP or
// network trouble; `conceal` keeps secrets and the URL's query out of every text it returns.
async function post(
  config: CallbackConfig,
  body: string,
  headers: Record<string, string>,
  context: { signal: AbortSignal; agent: { http: HttpAgent; https: HttpsAgent }; conceal: (text: string) => string },
): Promise<Attempt> {
  try {
    // A stream, so that the receiver's answer is read only up to MAX_RESPONSE_BYTES, never whole.
    const request = got.stream.post(config.url, {
      body,
      headers,
      signal: context.signal,
      agent: context.agent,
      timeout: { request: config.timeoutMs },
      retry: { limit: 0 },
      followRedirect: false,
      throwHttpErrors: false,
    });
    const { response, text } = await readCapped(request, MAX_RESPONSE_BYTES);
    const status = response.statusCode;
    const said = snippet(text, context.conceal);
    if (status >= 200 && status <= 299) return { result: 'delivered', status };
    if (status >= 300 && status <= 399) return { result: 'stop', status, problem: `HTTP ${status} redirect (redirects are not followed; fix CALLBACK_URL)` };
    if (status === 410) return { result: 'stop', status, problem: `HTTP 410 Gone: the receiver asked us to stop${said}` };
    if (status === 408 || status === 429 || status >= 500) {
      const retryAfter = response.headers['retry-after'];
      return { result: 'retry', status, problem: `HTTP ${status}${said}`, retryAfterMs: parseRetryAfter(typeof retryAfter === 'string' ? retryAfter : undefined) };
    }
    return { result: 'stop', status, problem: `HTTP ${status}${said}` };
  } catch (error) {
    if (error instanceof RequestError) {
      const problem = context.conceal(`${error.code}: ${error.message}`);
      return PERMANENT_ERROR_CODES.has(error.code) ? { result: 'stop', status: undefined, problem } : { result: 'retry', status: undefined, problem };
    }
    return { result: 'stop', status: undefined, problem: context.conceal(error instanceof Error ? error.message : String(error)) };
  }
}

// The response and at most `maxBytes` of its body; the rest is never read (the socket is closed).
async function readCapped(request: ReturnType<typeof got.stream.post>, maxBytes: number): Promise<{ response: PlainResponse; text: string }> {
  try {
    const response = await new Promise<PlainResponse>((resolve, reject) => {
      request.once('response', resolve);
      request.once('error', reject);
    });
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of request as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= maxBytes) break;
    }
    return { response, text: Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8') };
  } finally {
    request.destroy();
  }
}

// CALLBACK_HEADERS without the reserved ones (named once in the log, values never shown).
function extraHeaders(configured: Readonly<Record<string, string>>, log: Logger): Record<string, string> {
  const kept: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(configured)) {
    if (RESERVED_HEADERS.has(name.toLowerCase())) dropped.push(name);
    else kept[name.toLowerCase()] = value;
  }
  if (dropped.length > 0) log.warn({ callback: { ignoredHeaders: dropped } }, `CALLBACK_HEADERS may not set ${dropped.join(', ')}; ignored`);
  return kept;
}

// Why delivery stopped early, in words: a signal is not a deadline.
function stopReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (reason instanceof InterruptedError) return `interrupted by ${reason.signal}`;
  if (reason instanceof DeadlineError) return 'the run deadline (BACKUP_TIMEOUT) was reached';
  if (reason instanceof Error && reason.name === 'TimeoutError') return 'the callback deadline was reached';
  return 'the run was stopped';
}

function undelivered(target: string, attempts: number, last: Attempt | undefined, why: string): CallbackError {
  const status = last?.status;
  const detail = last && last.result !== 'delivered' ? `; last: ${last.problem}` : '';
  return new CallbackError(`callback to ${target} not delivered after ${attempts} attempt(s): ${why}${detail}`, { attempts, status });
}

function snippet(text: string, conceal: (text: string) => string): string {
  const trimmed = text.trim();
  if (!trimmed) return '';
  // Conceal before clipping: a cut must not leave half a secret behind.
  return `: ${clip(conceal(trimmed).replace(/\s+/g, ' '), MAX_RESPONSE_SNIPPET_BYTES)}`;
}

