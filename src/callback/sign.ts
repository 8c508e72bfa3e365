// Standard Webhooks v1 signatures: HMAC-SHA256 over `${id}.${timestamp}.${body}` with each secret.
// Imports only node:crypto, because the verifier (and so what a control plane bundles) uses it too.
import { createHmac } from 'node:crypto';

// Prefix of a Standard Webhooks secret; the rest is the base64 HMAC key.
export const SECRET_PREFIX = 'whsec_';

// The signature scheme this module produces and accepts.
export const SIGNATURE_VERSION = 'v1';

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

// The HMAC key of a secret: the base64 bytes after `whsec_` (the prefix may be omitted).
export function secretKey(secret: string): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  if (!BASE64.test(encoded)) throw new TypeError('webhook secret is not base64 after whsec_');
  return Buffer.from(encoded, 'base64');
}

// The raw HMAC-SHA256 of one message, over the exact bytes of the body.
export function hmac(key: Buffer, id: string, timestamp: number, body: string | Buffer): Buffer {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`, 'utf8').update(body).digest();
}

// The `webhook-signature` header value: one `v1,<base64>` per secret, space-separated (key rotation).
export function signatureHeader(secrets: readonly string[], id: string, timestamp: number, body: string | Buffer): string {
  if (secrets.length === 0) throw new TypeError('at least one webhook secret is needed to sign');
  return secrets.map((secret) => `${SIGNATURE_VERSION},${hmac(secretKey(secret), id, timestamp, body).toString('base64')}`).join(' ');
}
