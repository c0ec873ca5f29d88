/**
 * Redaction for text that may carry secrets the bridge was given: a URL's password (an OTLP
 * endpoint may be `https://user:token@host`), and known secret values (broker password, OTLP
 * header values) wherever they appear in a message from a library.
 */

/** The URL with its password (and a username-only credential) replaced by `***`. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== '') url.password = '***';
    else if (url.username !== '') url.username = '***';
    return url.href;
  } catch {
    // Not a URL: hide anything between `scheme://` and the last `@`.
    return text.replace(/^([a-z0-9+.-]*:\/\/)[^/]*@/i, '$1***@');
  }
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
