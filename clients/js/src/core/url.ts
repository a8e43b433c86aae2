// A small reader of absolute URLs (scheme://authority/path), enough for the
// checks the Go code makes with net/url: React Native's URL class does not
// implement hostname and friends, so the core cannot rely on it.

export interface ParsedURL {
  scheme: string; // lowercase
  /** Host as written in the authority, with brackets for IPv6, without port. */
  host: string;
  /** Host without brackets (url.URL.Hostname). */
  hostname: string;
  port: string;
  hasUserinfo: boolean;
  /** The path, query and fragment, as written. */
  rest: string;
}

export class URLError extends Error {}

/** Parses s; throws URLError when it is not an absolute URL with a host. */
export function parseURL(s: string): ParsedURL {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(s);
  if (!m) throw new URLError(`${JSON.stringify(s)} is not an absolute URL`);
  const scheme = m[1]!.toLowerCase();
  const after = s.slice(m[0].length);
  if (!after.startsWith("//")) throw new URLError(`${JSON.stringify(s)} is not an absolute URL`);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) throw new URLError(`${JSON.stringify(s)} is not a URL: it contains a space or control character`);
  }
  const body = after.slice(2);
  let end = body.length;
  for (const c of ["/", "?", "#"]) {
    const k = body.indexOf(c);
    if (k >= 0 && k < end) end = k;
  }
  let authority = body.slice(0, end);
  const rest = body.slice(end);
  let hasUserinfo = false;
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    hasUserinfo = true;
    authority = authority.slice(at + 1);
  }
  let host = authority;
  let port = "";
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) throw new URLError(`${JSON.stringify(s)}: missing ']' in host`);
    host = authority.slice(0, close + 1);
    const tail = authority.slice(close + 1);
    if (tail !== "") {
      if (!tail.startsWith(":")) throw new URLError(`${JSON.stringify(s)}: invalid port`);
      port = tail.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(":");
    if (colon >= 0) {
      host = authority.slice(0, colon);
      port = authority.slice(colon + 1);
    }
  }
  if (port !== "" && !/^[0-9]+$/.test(port)) throw new URLError(`${JSON.stringify(s)}: invalid port ${JSON.stringify(port)}`);
  if (host === "") throw new URLError(`${JSON.stringify(s)} is not an absolute URL`);
  const hostname = host.startsWith("[") ? host.slice(1, -1) : host;
  return { scheme, host, hostname, port, hasUserinfo, rest };
}
