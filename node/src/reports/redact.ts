/**
 * Passwords out of every message (Python's `endcall.reports.redact`): the password of every
 * connection string (`postgresql://user:***@host/db`, `password=***`) is masked.
 */

const MASK = "***";
const URL_PW = /(\b[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s/]*)(?=@)/g;
const KEYWORD_PW = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'"]+)/gi;

export function redact(text: string): string {
  if (!text.includes("://") && !text.toLowerCase().includes("password")) return text;
  return text
    .replace(URL_PW, (m, head: string, pw: string) => (pw ? head + MASK : m))
    .replace(KEYWORD_PW, (_m, head: string) => head + MASK);
}
