// Keeping secrets out of text that leaves the process. The rule: a secret never enters a message in
// the first place (config errors echo values only through redactValue); scrubSecrets is the safety
// net for text we do not write ourselves (a dump tool's stderr, an SDK's or a receiver's error text).

const REDACTED = '[redacted]';
// Shorter secrets are not scrubbed from text: replacing `e` or `abc` wherever it stands would garble
// the log ("us[redacted]r") and, by the pattern of the garbling, tell the secret.
export const MIN_SCRUBBED_SECRET_LENGTH = 4;
// A secret counts as present only where it stands whole: not inside a longer run of letters, digits and _.
const WORD = /[\p{L}\p{N}_]/u;

// Replaces every whole occurrence of each secret (longest first, so a secret containing another
// goes whole). "Whole": the characters around it are not letters or digits that would extend it.
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  const ordered = [...new Set(secrets)].filter((secret) => secret.length >= MIN_SCRUBBED_SECRET_LENGTH).sort((a, b) => b.length - a.length);
  let result = text;
  for (const secret of ordered) {
    if (!result.includes(secret)) continue;
    let out = '';
    let from = 0;
    for (let at = result.indexOf(secret); at >= 0; at = result.indexOf(secret, at + 1)) {
      if (at < from) continue;
      const end = at + secret.length;
      if (extendsWord(result[at - 1], secret[0]) || extendsWord(result[end], secret.at(-1))) continue;
      out += result.slice(from, at) + REDACTED;
      from = end;
    }
    result = out + result.slice(from);
  }
  return result;
}

// A neighbour extends the secret into a longer word only when both are word characters.
function extendsWord(neighbour: string | undefined, edge: string | undefined): boolean {
  return neighbour !== undefined && edge !== undefined && WORD.test(neighbour) && WORD.test(edge);
}

// A URL as it may appear in logs and errors: no user:password@, no query, no fragment (tokens and
// signatures live there). Text that is not a URL loses anything after `?` and before `@`.
export function withoutCredentials(location: string): string {
  if (!URL.canParse(location)) return location.replace(/\?.*$/s, '').replace(/^([^/]*\/\/)?[^/@]*@/s, '$1');
  const url = new URL(location);
  if (!url.username && !url.password && !url.search && !url.hash) return location;
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  return url.href;
}

// Longer configured values are clipped when echoed: an error names the problem, not the whole value.
const MAX_ECHO_LENGTH = 120;

// A configured value as a config error may echo it: a secret's value never, a URL without its
// credentials and query, anything else as typed (clipped, control characters escaped).
export function redactValue(name: string, value: string, secretNames: readonly string[]): string {
  if (secretNames.includes(name)) return REDACTED;
  const cleaned = /[@?#]/.test(value) ? withoutCredentials(value) : value;
  const clipped = cleaned.length > MAX_ECHO_LENGTH ? `${cleaned.slice(0, MAX_ECHO_LENGTH)}…` : cleaned;
  return JSON.stringify(clipped).slice(1, -1);
}
