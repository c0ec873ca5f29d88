/**
 * Bounds a string attribute, keeping its head and its tail: for a Python traceback the tail holds
 * the exception that was finally raised, the head the first frames. Returns the value unchanged
 * when it fits.
 */
export function truncateMiddle(value: string, maxLength: number): string {
  if (value.length <= maxLength) return value;
  const marker = `\n… [${value.length - maxLength} characters truncated] …\n`;
  const keep = Math.max(0, maxLength - marker.length);
  const head = Math.ceil(keep / 2);
  return value.slice(0, head) + marker + value.slice(value.length - (keep - head));
}
