/**
 * Characters a terminal acts on or that make text display as something else, none of which a
 * task name, host name, queue or exception line needs:
 * - C0 controls (ESC starts CSI/OSC sequences: clear screen, window title, OSC 52 clipboard
 *   writes, hidden text; CR, LF, BS and TAB forge or overwrite lines), DEL and the C1 controls
 *   (U+009B is a one-character CSI, U+009D an OSC);
 * - invisible and direction-changing format characters: soft hyphen, Arabic letter mark, the
 *   zero-width characters, LRM/RLM, line and paragraph separators, the bidi embeddings,
 *   overrides and isolates (CVE-2021-42574, "Trojan Source"), word joiner and invisible
 *   operators, BOM, interlinear annotation controls, and the tag characters.
 * ECMA-48 (https://ecma-international.org/publications-and-standards/standards/ecma-48/) and
 * Unicode UAX #9 define them.
 */
const UNSAFE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\u{e0000}-\u{e007f}]/gu;

/**
 * Text from an event made safe to print on a terminal: every character above is shown as a
 * visible escape (`\x1b`, `\u202e`) instead of reaching the terminal.
 */
export function escapeForTerminal(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.codePointAt(0) ?? 0;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
