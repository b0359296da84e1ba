/**
 * The per-job URL allow-list of `jobConfig` (`ENDCALL_WEBHOOK_URL_ALLOW` plus `allowUrls`):
 * entries are URL prefixes (`https://hooks.example.com/endcall/`: same scheme, host and port,
 * the path equal to the prefix's or below it on a `/` boundary) or https hosts
 * (`hooks.example.com`, `host:port`, `*.hooks.example.com`). Port of Python's
 * `endcall.agent.job_config.url_allowed`.
 *
 * Python splits URLs with `urllib.parse.urlsplit` (the raw text); fetch goes where the WHATWG
 * parser says (which resolves `..` and `%2e%2e`, decodes `%`-escapes in hosts, takes `\` for
 * `/`). So a URL is matched on its raw parts, like Python, and allowed only when the WHATWG
 * reading has the same host: whatever Python refuses is refused here, and nothing is allowed
 * that fetch would send elsewhere.
 */

/** Thrown for the worker's own mistakes and when a job cannot be configured safely. */
export class JobConfigError extends Error {
  override readonly name = "JobConfigError";
}

export const URL_ALLOW_ENV = "ENDCALL_WEBHOOK_URL_ALLOW";

const HOST_ENTRY = /^(\*\.)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/;
const RAW_URL = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/;

interface RawParts {
  scheme: string;
  /** lower case, without IPv6 brackets (Python's `hostname`) */
  host: string;
  port: number;
  path: string;
  query: string;
}

function defaultPort(scheme: string): number {
  return scheme === "https" ? 443 : 80;
}

/** The raw parts of an absolute http(s) URL, or null when it is not one whose raw reading and
 * WHATWG reading agree on scheme, host and port. */
export function splitUrl(url: string): RawParts | null {
  if (url.includes("\\")) return null;
  const m = RAW_URL.exec(url);
  if (!m) return null;
  const scheme = m[1]!.toLowerCase();
  const netloc = m[2]!;
  if (netloc.includes("@")) return null;
  let host: string;
  let portText: string;
  if (netloc.startsWith("[")) {
    const close = netloc.indexOf("]");
    if (close < 0) return null;
    host = netloc.slice(1, close);
    const rest = netloc.slice(close + 1);
    if (rest && !rest.startsWith(":")) return null;
    portText = rest.slice(1);
  } else {
    const colon = netloc.indexOf(":");
    host = colon < 0 ? netloc : netloc.slice(0, colon);
    portText = colon < 0 ? "" : netloc.slice(colon + 1);
  }
  host = host.toLowerCase();
  if (!host || (portText && !/^\d+$/.test(portText))) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const whatwgScheme = parsed.protocol.replace(/:$/, "");
  const whatwgHost = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const port = portText ? Number(portText) : defaultPort(scheme);
  const whatwgPort = parsed.port ? Number(parsed.port) : defaultPort(whatwgScheme);
  if (whatwgScheme !== scheme || whatwgHost !== host || whatwgPort !== port) return null;
  return { scheme, host, port, path: m[3]!, query: m[4] ?? "" };
}

/** Python's `urllib.parse.unquote` for what matters here: `%2e` is `.`, `%2f` is `/`. */
function dotSegments(path: string): boolean {
  const decoded = path.replace(/%2e/gi, ".").replace(/%2f/gi, "/");
  return decoded.split("/").some((seg) => seg === "." || seg === "..");
}

/** Check one allow-list entry (the worker's own configuration): throws `JobConfigError`. */
export function checkAllowEntry(entry: string): string {
  if (entry.includes("://")) {
    const parts = splitUrl(entry);
    if (!parts || (parts.scheme !== "http" && parts.scheme !== "https") || parts.port === 0) {
      throw new JobConfigError(
        `${URL_ALLOW_ENV} / allowUrls: entry ${JSON.stringify(entry)} is not a URL prefix (an absolute http(s) URL with a host and no user info or #fragment)`,
      );
    }
    if (parts.query) {
      throw new JobConfigError(`${URL_ALLOW_ENV} / allowUrls: entry ${JSON.stringify(entry)} must not have a ?query`);
    }
    if (entry.includes("#")) {
      throw new JobConfigError(`${URL_ALLOW_ENV} / allowUrls: entry ${JSON.stringify(entry)} must not have a #fragment`);
    }
  } else if (!HOST_ENTRY.test(entry)) {
    throw new JobConfigError(
      `${URL_ALLOW_ENV} / allowUrls: entry ${JSON.stringify(entry)} is neither a URL prefix (https://host/path/) nor a host (host, host:port, *.domain)`,
    );
  }
  return entry;
}

/** Whether `url` (already a valid webhook URL) matches an allow-list entry (see the module
 * doc). A URL with `.`/`..` path segments (also `%2e`-escaped) or a backslash never does. */
export function urlAllowed(url: string, entries: readonly string[]): boolean {
  const parts = splitUrl(url);
  if (!parts || dotSegments(parts.path)) return false;
  for (const entry of entries) {
    if (entry.includes("://")) {
      const prefix = splitUrl(entry);
      if (!prefix || prefix.scheme !== parts.scheme || prefix.host !== parts.host || prefix.port !== parts.port) continue;
      const want = prefix.path || "/";
      const path = parts.path || "/";
      if (path === want || path.startsWith(want.endsWith("/") ? want : want + "/")) return true;
    } else {
      const wildcard = entry.startsWith("*.");
      const bare = wildcard ? entry.slice(2) : entry;
      const cut = bare.lastIndexOf(":");
      let name = cut < 0 ? "" : bare.slice(0, cut);
      let port = cut < 0 ? "" : bare.slice(cut + 1);
      if (!name || port.includes("]")) {
        name = bare;
        port = "";
      }
      name = name.toLowerCase().replace(/^[[\]]+|[[\]]+$/g, "");
      if (parts.scheme !== "https" || parts.port !== (port ? Number(port) : 443)) continue;
      if (wildcard ? parts.host.endsWith("." + name) : parts.host === name) return true;
    }
  }
  return false;
}
