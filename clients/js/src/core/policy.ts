// Pin policies: the JSON form of Rampart's policy file, validated by the
// rules of the Go package pin (ParsePolicy), matched as Policy.Match does.

import { base64Decode, base64Encode } from "./b64.js";
import { JsonNumber, JsonObject, JsonValue } from "./json.js";

export class PolicyError extends Error {}

export type Mode = "enforce" | "report-only";
export type Role = "" | "leaf" | "backup" | "ca";

/** A pin: an SPKI digest ("sha256/") or a certificate digest ("cert-sha256:"). */
export interface Pin {
  kind: "spki" | "cert";
  /** The canonical text form. */
  text: string;
  digest: Uint8Array;
}

export interface Rule {
  domain: string;
  includeSubdomains: boolean;
  mode: Mode;
  /** YYYY-MM-DD, inclusive, UTC; "" for none. */
  expires: string;
  pins: Pin[];
  roles: Map<string, Role>;
  allowSinglePin: boolean;
  /** Resolved: the rule's own, else its policy's default; "" for none. */
  reportURI: string;
}

export interface CTLog {
  key: string;
  operator: string;
  description: string;
}

export interface Policy {
  reportURI: string;
  ctLogs: CTLog[];
  rules: Rule[];
}

/** Parses a pin in either text form. */
export function parsePin(s: string): Pin {
  if (s.startsWith("sha256/")) {
    const body = s.slice(7);
    const d = body.length === 44 ? base64Decode(body) : undefined;
    if (!d || d.length !== 32 || base64Encode(d) !== body) throw new PolicyError(`invalid pin ${JSON.stringify(s.slice(0, 100))}: want sha256/ and the base64 of 32 bytes`);
    return { kind: "spki", text: s, digest: d };
  }
  if (s.startsWith("cert-sha256:")) {
    let body = s.slice(12);
    if (body.includes(":")) {
      if (!/^([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$/.test(body)) throw new PolicyError(`invalid pin ${JSON.stringify(s.slice(0, 100))}: misplaced colon`);
      body = body.replaceAll(":", "");
    }
    if (!/^[0-9a-fA-F]{64}$/.test(body)) throw new PolicyError(`invalid pin ${JSON.stringify(s.slice(0, 100))}: want cert-sha256: and 64 hex digits`);
    body = body.toLowerCase();
    const d = new Uint8Array(32);
    for (let i = 0; i < 32; i++) d[i] = parseInt(body.slice(2 * i, 2 * i + 2), 16);
    return { kind: "cert", text: "cert-sha256:" + body, digest: d };
  }
  throw new PolicyError(`invalid pin ${JSON.stringify(s.slice(0, 100))}: unknown prefix (want "sha256/<base64>" or "cert-sha256:<hex>")`);
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return v instanceof Map;
}

function str(o: JsonObject, k: string, where: string): string {
  const v = o.get(k);
  if (v === undefined) return "";
  if (typeof v !== "string") throw new PolicyError(`${where}: ${k} must be a string`);
  return v;
}

function bool(o: JsonObject, k: string, where: string): boolean {
  const v = o.get(k);
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw new PolicyError(`${where}: ${k} must be true or false`);
  return v;
}

function only(o: JsonObject, allowed: string[], where: string): void {
  for (const k of o.keys()) {
    if (!allowed.includes(k)) throw new PolicyError(`${where}: field ${JSON.stringify(k.slice(0, 64))} is not a ${where === "policy" ? "policy" : "domain"} field`);
  }
}

const ipv4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** Whether host is an IP address literal (this client pins IPv4 addresses only). */
export function isIP(host: string): boolean {
  return ipv4.test(host) || host.includes(":");
}

function checkName(name: string): string {
  if (name === "") throw new PolicyError("domain is empty");
  if (name.includes(":") || name.startsWith("[")) throw new PolicyError(`domain ${JSON.stringify(name)}: IPv6 rules are not supported by this client`);
  if (ipv4.test(name)) return name;
  if (name.includes("*")) throw new PolicyError(`domain ${JSON.stringify(name)}: wildcards are not allowed: pin the parent domain with include_subdomains: true`);
  if (/[/:]/.test(name)) throw new PolicyError(`domain ${JSON.stringify(name)}: want a host name, without scheme, port or path`);
  const n = (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
  if (n.length > 253) throw new PolicyError(`domain ${JSON.stringify(name)}: host name longer than 253 characters`);
  for (const l of n.split(".")) {
    if (l === "") throw new PolicyError(`domain ${JSON.stringify(name)}: empty label in host name`);
    if (l.length > 63) throw new PolicyError(`domain ${JSON.stringify(name)}: label longer than 63 characters`);
    if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/.test(l)) throw new PolicyError(`domain ${JSON.stringify(name)}: invalid character in host name (write internationalized names in their xn-- form)`);
  }
  return n;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return /^127\./.test(h) && ipv4.test(h) || h === "::1";
}

function checkReportURI(s: string): void {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new PolicyError(`report_uri ${JSON.stringify(s)} is not a URL`);
  }
  if (u.username !== "" || u.password !== "") throw new PolicyError(`report_uri ${JSON.stringify(s)} carries credentials`);
  if (u.protocol === "https:" && u.hostname !== "") return;
  if (u.protocol === "http:" && isLoopback(u.hostname)) return;
  throw new PolicyError(`report_uri ${JSON.stringify(s)}: must be https (http only to a loopback address)`);
}

const dateRE = /^(\d{4})-(\d{2})-(\d{2})$/;

function checkDate(s: string, where: string): void {
  const m = dateRE.exec(s);
  const d = m ? new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!)) : undefined;
  if (!m || !d || d.getUTCFullYear() !== +m[1]! || d.getUTCMonth() !== +m[2]! - 1 || d.getUTCDate() !== +m[3]!) {
    throw new PolicyError(`${where}: expires ${JSON.stringify(s)}: want a date as YYYY-MM-DD`);
  }
}

/** Parses and validates a policy (a JSON object already read strictly). */
export function parsePolicy(v: JsonValue): Policy {
  if (!isObject(v)) throw new PolicyError("policy: not a JSON object");
  only(v, ["version", "report_uri", "ct_logs", "domains"], "policy");
  const ver = v.get("version");
  if (!(ver instanceof JsonNumber) || ver.text !== "1") throw new PolicyError("policy: want version: 1");
  const reportURI = str(v, "report_uri", "policy");
  if (reportURI !== "") checkReportURI(reportURI);
  const ctLogs: CTLog[] = [];
  const logs = v.get("ct_logs");
  if (logs !== undefined && logs !== null) {
    if (!Array.isArray(logs)) throw new PolicyError("policy: ct_logs must be a list");
    for (const l of logs) {
      if (!isObject(l)) throw new PolicyError("policy: a ct_logs entry must be an object");
      only(l, ["key", "operator", "description"], "ct_logs entry");
      const key = str(l, "key", "ct_logs entry"), operator = str(l, "operator", "ct_logs entry");
      if (!base64Decode(key) || operator === "") throw new PolicyError("policy: a ct_logs entry needs a base64 key and an operator");
      ctLogs.push({ key, operator, description: str(l, "description", "ct_logs entry") });
    }
  }
  const domains = v.get("domains");
  if (!Array.isArray(domains) || domains.length === 0) throw new PolicyError("policy: no domains: a policy pins at least one domain");
  const rules: Rule[] = [];
  const seen = new Set<string>();
  for (const d of domains) {
    const r = parseRule(d, reportURI);
    if (seen.has(r.domain)) throw new PolicyError(`domain ${JSON.stringify(r.domain)}: listed twice: merge the two rules`);
    seen.add(r.domain);
    rules.push(r);
  }
  return { reportURI, ctLogs, rules };
}

function parseRule(d: JsonValue, defaultURI: string): Rule {
  if (!isObject(d)) throw new PolicyError("policy: a domain entry must be an object");
  only(d, ["domain", "include_subdomains", "mode", "expires", "pins", "allow_single_pin", "report_uri", "require_scts"], "domain");
  const raw = str(d, "domain", "domain");
  const domain = checkName(raw);
  const where = `domain ${JSON.stringify(domain)}`;
  const includeSubdomains = bool(d, "include_subdomains", where);
  if (includeSubdomains && isIP(domain)) throw new PolicyError(`${where}: include_subdomains makes no sense for an IP address`);
  if (bool(d, "require_scts", where)) throw new PolicyError(`${where}: require_scts is not supported by this client (it cannot check SCTs)`);
  const m = str(d, "mode", where) || "enforce";
  if (m !== "enforce" && m !== "report-only") throw new PolicyError(`${where}: mode ${JSON.stringify(m)}: want "enforce" or "report-only"`);
  const expires = str(d, "expires", where);
  if (expires !== "") checkDate(expires, where);
  const list = d.get("pins");
  if (!Array.isArray(list) || list.length === 0) throw new PolicyError(`${where}: no pins`);
  const pins: Pin[] = [];
  const roles = new Map<string, Role>();
  for (const e of list) {
    let text: string, role: Role = "";
    if (typeof e === "string") text = e;
    else if (isObject(e)) {
      only(e, ["pin", "role"], "pin");
      text = str(e, "pin", where);
      const r = str(e, "role", where);
      if (r !== "" && r !== "leaf" && r !== "backup" && r !== "ca") throw new PolicyError(`${where}: role ${JSON.stringify(r)}: want leaf, backup or ca`);
      role = r as Role;
    } else throw new PolicyError(`${where}: a pin is a string or {pin, role}`);
    const p = parsePin(text);
    if (pins.some((q) => q.text === p.text)) throw new PolicyError(`${where}: ${p.text}: pin listed twice; a backup pin must be a different key`);
    pins.push(p);
    if (role !== "") roles.set(p.text, role);
  }
  const allowSinglePin = bool(d, "allow_single_pin", where);
  if (m === "enforce" && pins.length === 1 && !allowSinglePin) throw new PolicyError(`${where}: enforce mode needs at least two distinct pins: add a backup pin, or set allow_single_pin: true`);
  let reportURI = str(d, "report_uri", where);
  if (reportURI !== "") checkReportURI(reportURI);
  else reportURI = defaultURI;
  if (reportURI !== "") {
    const h = new URL(reportURI).hostname.toLowerCase().replace(/\.+$/, "");
    if (h === domain || (includeSubdomains && h.endsWith("." + domain))) throw new PolicyError(`${where}: report_uri is on the pinned domain itself (report loop)`);
  }
  return { domain, includeSubdomains, mode: m, expires, pins, roles, allowSinglePin, reportURI };
}

/** The canonical form of a host name for matching (lowercase, no final dots, no brackets). */
export function canonicalHost(host: string): string {
  let h = host;
  for (;;) {
    const t = h.replace(/\.+$/, "").replace(/^\[(.*)\]$/, "$1");
    if (t === h) break;
    h = t;
  }
  return h.toLowerCase();
}

/** The rule that applies to host: an exact rule, else the nearest parent with include_subdomains. */
export function match(p: Policy, host: string): Rule | undefined {
  let h = canonicalHost(host);
  const byName = (n: string) => p.rules.find((r) => r.domain === n);
  const exact = byName(h);
  if (exact || isIP(h)) return exact;
  for (let i = h.indexOf("."); i >= 0; i = h.indexOf(".")) {
    h = h.slice(i + 1);
    const r = byName(h);
    if (r && r.includeSubdomains) return r;
  }
  return undefined;
}

/** The first instant (ms) the rule's pins no longer hold, or undefined. */
export function expiresAt(r: Rule): number | undefined {
  if (r.expires === "") return undefined;
  const m = dateRE.exec(r.expires)!;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]! + 1);
}

export function expired(r: Rule, nowMs: number): boolean {
  const t = expiresAt(r);
  return t !== undefined && nowMs >= t;
}

/** A rule in the normalized policy-file form (what Go's Policy.MarshalJSON writes). */
export function ruleJSON(r: Rule): Record<string, unknown> {
  const o: Record<string, unknown> = { domain: r.domain, include_subdomains: r.includeSubdomains, mode: r.mode };
  if (r.expires !== "") o.expires = r.expires;
  o.pins = r.pins.map((p) => (r.roles.has(p.text) ? { pin: p.text, role: r.roles.get(p.text) } : p.text));
  if (r.allowSinglePin) o.allow_single_pin = true;
  if (r.reportURI !== "") o.report_uri = r.reportURI;
  return o;
}

/** The whole policy in normalized form, as a string: equal policies give equal strings. */
export function policyKey(p: Policy): string {
  return JSON.stringify({ version: 1, report_uri: p.reportURI, ct_logs: p.ctLogs, domains: p.rules.map(ruleJSON) });
}
