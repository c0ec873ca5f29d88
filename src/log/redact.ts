/**
 * Redaction for text that may carry secrets the bridge was given: a URL's credentials (an OTLP
 * endpoint may be `https://user:token@host`, a broker URL holds the broker password), a URL's
 * query string (`?api_key=…`), and known secret values (broker password, OTLP header values)
 * wherever they appear in a message from a library.
 */

/** `scheme://`, as RFC 3986 spells a scheme (bounded, so a scan of long text stays linear). */
const SCHEME = /^[a-z][a-z0-9+.-]{0,31}:\/\//i;

/**
 * The one loggable form of a URL (broker and OTLP alike): the password replaced by `***`, a
 * username without a password too (`https://token@host`: a lone user name is often a token;
 * `amqp://guest@host//` is logged as `amqp://***@host//`), and the query string and fragment
 * left out (`?api_key=…`). When the credentials hold an unencoded `/`, `?`, `#` or `@` the
 * parser would split the URL inside them: everything between `scheme://` and the last `@` is
 * hidden instead. Text that is not a URL at all is treated the same way.
 */
export function redactUrl(text: string): string {
  const scheme = SCHEME.exec(text)?.[0];
  if (scheme !== undefined) {
    const at = text.lastIndexOf('@');
    const authorityEnd = endOfAuthority(text, scheme.length);
    // An `@` past the authority: the user info itself holds `/`, `?` or `#`.
    if (at >= authorityEnd) return `${scheme}***@${withoutQuery(text.slice(at + 1))}`;
  }
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = '***';
    else if (url.username !== '') url.username = '***';
    url.search = '';
    url.hash = '';
    return url.href;
  } catch {
    if (scheme === undefined) return withoutQuery(text);
    const at = text.lastIndexOf('@');
    return at < 0 ? withoutQuery(text) : `${scheme}***@${withoutQuery(text.slice(at + 1))}`;
  }
}

/** True when the URL's user info holds an unencoded `/`, `?` or `#` (see redactUrl). */
export function hasUnencodedCredentials(text: string): boolean {
  const scheme = SCHEME.exec(text)?.[0];
  if (scheme === undefined) return false;
  return text.lastIndexOf('@') >= endOfAuthority(text, scheme.length);
}

/** Where the authority ends (the first `/`, `?` or `#` after `scheme://`), as URL parsers cut. */
function endOfAuthority(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2f || c === 0x3f || c === 0x23 || c === 0x5c) return i;
  }
  return text.length;
}

function withoutQuery(text: string): string {
  let end = text.length;
  const query = text.indexOf('?');
  if (query >= 0) end = query;
  const hash = text.indexOf('#');
  if (hash >= 0 && hash < end) end = hash;
  return text.slice(0, end);
}

/** Secrets shorter than this are not searched for: they would mangle every message. */
const MIN_SECRET_LENGTH = 3;

/**
 * A function replacing every occurrence of each secret (as given, and percent-encoded as it
 * appears in URLs and headers variables) with `***`.
 */
export function secretRedactor(secrets: Iterable<string | undefined>): (text: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret === undefined || secret.length < MIN_SECRET_LENGTH) continue;
    forms.add(secret);
    forms.add(encodeURIComponent(secret));
  }
  // Longest first, so a secret containing another is replaced whole.
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const form of ordered) out = out.split(form).join('***');
    return out;
  };
}
