// Verifies a Plan B callback the way a control plane receives it: Standard Webhooks v1 signature over
// the raw body, timestamp within a tolerance, any of N secrets (rotation), constant-time comparison.
// Bundled alone as dist/verify.js (`import { verifyCallback } from 'planb-backup/verify'`): it must
// import nothing but node built-ins and its siblings sign.ts and payload-types.ts.
import { timingSafeEqual } from 'node:crypto';
import type { CallbackPayload } from './payload-types.ts';
import { hmac, secretKey, SIGNATURE_VERSION } from './sign.ts';

export type {
  CallbackData,
  CallbackErrorInfo,
  CallbackFacts,
  CallbackFailed,
  CallbackObject,
  CallbackPayload,
  CallbackPlatform,
  CallbackSucceeded,
  CallbackSummary,
  CallbackSummaryData,
  CallbackSummaryEntry,
} from './payload-types.ts';

// How far a timestamp may be from the receiver's clock, either way; the Standard Webhooks default.
export const DEFAULT_TOLERANCE_SECONDS = 300;

const HMAC_BYTES = 32; // SHA-256 output
const TIMESTAMP = /^\d{1,15}$/; // integer Unix seconds; the bound keeps Number exact
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

// Why a request was rejected: `malformed` (not a webhook: headers missing or unreadable, body not a
// callback) deserves 400; `timestamp` and `signature` (not from us, or replayed) deserve 401.
export type VerificationFailure = 'malformed' | 'timestamp' | 'signature';

// The request is not an authentic, fresh Plan B callback. The message never contains a secret.
export class WebhookVerificationError extends Error {
  readonly reason: VerificationFailure;
  constructor(reason: VerificationFailure, message: string) {
    super(message);
    this.name = 'WebhookVerificationError';
    this.reason = reason;
  }
}

// Header access in both shapes receivers have: node's IncomingHttpHeaders or a fetch Headers.
export type WebhookHeaders = Readonly<Record<string, string | readonly string[] | undefined>> | Headers;

export type VerifyOptions = {
  // Maximum age, and maximum lead into the future, of `webhook-timestamp` (default 300).
  toleranceSeconds?: number;
  // The receiver's clock in milliseconds since the epoch (default Date.now).
  now?: () => number;
};

// Checks the signature and freshness of a callback and returns its parsed payload. `rawBody` must be
// the exact bytes received (before any JSON parsing). `secrets` are `whsec_…` strings (a string may
// hold several, space-separated, as CALLBACK_SECRET does); a signature by any of them is accepted.
// Throws WebhookVerificationError when the request is not authentic or not fresh, and TypeError
// when a configured secret is unusable.
export function verifyCallback(
  rawBody: string | Buffer,
  headers: WebhookHeaders,
  secrets: string | readonly string[],
  options: VerifyOptions = {},
): CallbackPayload {
  const keys = (typeof secrets === 'string' ? [secrets] : secrets).flatMap((s) => s.split(/\s+/)).filter(Boolean).map(secretKey);
  if (keys.length === 0 || keys.some((key) => key.length === 0)) throw new TypeError('verifyCallback needs at least one non-empty webhook secret');

  const id = header(headers, 'webhook-id');
  const timestampText = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestampText || !signatures) {
    throw new WebhookVerificationError('malformed', 'missing webhook-id, webhook-timestamp or webhook-signature header');
  }
  if (!TIMESTAMP.test(timestampText)) throw new WebhookVerificationError('malformed', 'webhook-timestamp is not integer Unix seconds');

  const timestamp = Number(timestampText);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = Math.floor((options.now ?? Date.now)() / 1000);
  if (now - timestamp > tolerance) throw new WebhookVerificationError('timestamp', `webhook-timestamp is more than ${tolerance} s old`);
  if (timestamp - now > tolerance) throw new WebhookVerificationError('timestamp', `webhook-timestamp is more than ${tolerance} s in the future`);

  const expected = keys.map((key) => hmac(key, id, timestamp, rawBody));
  const offered = signatures
    .split(' ')
    .map((entry) => entry.split(','))
    .filter((parts): parts is [string, string] => parts.length === 2 && parts[0] === SIGNATURE_VERSION && BASE64.test(parts[1] ?? ''))
    .map(([, value]) => Buffer.from(value, 'base64'))
    .filter((value) => value.length === HMAC_BYTES);
  const match = offered.some((candidate) => expected.some((digest) => timingSafeEqual(candidate, digest)));
  if (!match) throw new WebhookVerificationError('signature', 'no webhook-signature matches any configured secret');

  return parsePayload(rawBody);
}

// One header's value, case-insensitively; a repeated header is joined with a space.
function header(headers: WebhookHeaders, name: string): string | undefined {
  if (isFetchHeaders(headers)) return headers.get(name) ?? undefined;
  const key = Object.keys(headers).find((candidate) => candidate.toLowerCase() === name);
  const value = key === undefined ? undefined : headers[key];
  return typeof value === 'string' ? value : value?.join(' ');
}

function isFetchHeaders(headers: WebhookHeaders): headers is Headers {
  return typeof (headers as Headers).get === 'function' && typeof (headers as Headers).has === 'function';
}

// The authenticated body as a payload; the envelope must have the shape every callback has.
function parsePayload(rawBody: string | Buffer): CallbackPayload {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8'));
  } catch (error) {
    throw new WebhookVerificationError('malformed', `signed body is not JSON: ${(error as Error).message}`);
  }
  const envelope = parsed as Partial<CallbackPayload> | null;
  if (
    typeof envelope !== 'object' || envelope === null ||
    (envelope.type !== 'backup.succeeded' && envelope.type !== 'backup.failed' && envelope.type !== 'backup.summary') ||
    typeof envelope.data !== 'object' || envelope.data === null
  ) {
    throw new WebhookVerificationError('malformed', 'signed body is not a Plan B callback (type/data)');
  }
  return envelope as CallbackPayload;
}
