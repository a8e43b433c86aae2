// Pin policies with the schema and every validation rule of pin/policy.go
// (the JSON form: bundles and exports carry JSON), read with the strict
// JSON parser of json.ts.

import { b64 } from "./bytes.js";
import { formatIP, isLoopbackHost, parseIP, unmap } from "./ip.js";
import { JsonError, JsonNumber, parseJSON, type JsonObject, type JsonValue } from "./json.js";
import { Pin, PinParseError } from "./pin.js";
import { parseURL, URLError } from "./url.js";

export type Mode = "enforce" | "report-only";
export type Role = "leaf" | "backup" | "ca";

/** A pinning rule for one host name, or a name and its subdomains. */
export interface Domain {
  /** Lowercase host name without trailing dot, or an IP address as netip prints it. */
  readonly name: string;
  readonly includeSubdomains: boolean;
  readonly mode: Mode;
  /** The last day (inclusive, UTC) the pins hold, YYYY-MM-DD; "" for none. */
  readonly expires: string;
  /** The first instant (ms since the epoch) at which the pins no longer hold; null for never. */
  readonly expiresAt: number | null;
  readonly pins: readonly Pin[];
  /** Roles by pin key (Pin.key). */
  readonly roles: ReadonlyMap<string, Role>;
  readonly allowSinglePin: boolean;
  /** The rule's report URI, resolved (its own, else the policy's default); "" for none. */
  readonly reportURI: string;
}

/** A ct_logs entry: validated and kept, unused by this client. */
export interface CTLog {
  /** Standard base64 of the log's DER public key. */
  readonly key: string;
  readonly operator: string;
  readonly description: string;
}

/** Whether the rule's pin set has expired at `now` (ms): Expires is inclusive. */
export function expired(d: Domain, now: number): boolean {
  return d.expiresAt !== null && now >= d.expiresAt;
}

/** One problem of an invalid policy; `domain` is "" for the policy as a whole. */
export interface PolicyProblem {
  readonly domain: string;
  readonly message: string;
}

/** An invalid policy, with every problem found (so that it is fixed in one pass). */
export class PolicyError extends Error {
  constructor(readonly problems: readonly PolicyProblem[], readonly source = "") {
    super(problems.map((p) => formatProblem(p, source)).join("\n"));
    this.name = "PolicyError";
  }
}

function formatProblem(p: PolicyProblem, source: string): string {
  let s = "pin: policy";
  if (source) s += " " + source;
  if (p.domain) s += `: domain ${JSON.stringify(p.domain)}`;
  return s + ": " + p.message;
}

const ERR = {
  duplicatePin: "pin listed twice; a backup pin must be a different key",
  duplicateDomain: "listed twice: merge the two rules",
  reportLoop:
    "report_uri is on the pinned domain itself: reports of a pin failure could never be delivered (report loop); send them to another host",
  noPins: "no pins",
  noBackup:
    "enforce mode needs at least two distinct pins: add a backup pin (the pin of a spare key kept offline, see `rampart pin keygen`), or set allow_single_pin: true to accept the risk",
  requireSCTs:
    "require_scts is not supported by this client: it cannot check Certificate Transparency SCTs, and ignoring the requirement would weaken the policy",
};

/** A rule before validation (what a policy file says). */
export interface DomainInput {
  name: string;
  includeSubdomains?: boolean;
  mode?: string;
  expires?: string;
  pins: Pin[];
  roles?: Map<string, string>;
  allowSinglePin?: boolean;
  reportURI?: string;
  requireSCTs?: boolean;
}

/** Canonical form of a server name for matching, as Go's canonicalHost. */
export function canonicalHost(host: string): { host: string; isIP: boolean } {
  for (;;) {
    let h = host.replace(/\.+$/, "");
    if (h.length > 1 && h[0] === "[" && h[h.length - 1] === "]") h = h.slice(1, -1);
    if (h === host) break;
    host = h;
  }
  if (mayBeIP(host)) {
    const a = parseIP(host);
    if (a) return { host: formatIP({ ...unmap(a), zone: "" }), isIP: true };
  }
  return { host: /[A-Z]/.test(host) ? host.toLowerCase() : host, isIP: false };
}

function mayBeIP(h: string): boolean {
  return h !== "" && (h.includes(":") || /^[0-9.]+$/.test(h));
}

/** Refuses a server name with an empty label ("api..example.com"), as Go's CanonicalHost. */
export function checkServerName(name: string): string {
  const { host, isIP } = canonicalHost(name);
  if (!isIP && (host === "" || host[0] === "." || host.includes(".."))) {
    throw new Error(`pin: server name has an empty label: ${JSON.stringify(name)}`);
  }
  return host;
}

/** An immutable, validated policy. Build one with parsePolicy or newPolicy. */
export class Policy {
  private readonly byName: Map<string, Domain>;

  private constructor(
    /** The default report URI ("" for none). */
    readonly reportURI: string,
    readonly ctLogs: readonly CTLog[],
    readonly domains: readonly Domain[],
  ) {
    this.byName = new Map(domains.map((d) => [d.name, d]));
  }

  /** @internal */
  static create(reportURI: string, ctLogs: CTLog[], domains: Domain[]): Policy {
    return new Policy(reportURI, Object.freeze(ctLogs), Object.freeze(domains));
  }

  /** The rule for host, or null: an exact rule first, else the nearest parent rule with includeSubdomains. */
  match(host: string): Domain | null {
    const c = canonicalHost(host);
    let h = c.host;
    const exact = this.byName.get(h);
    if (exact) return exact;
    if (c.isIP) return null;
    for (let i = h.indexOf("."); i >= 0; i = h.indexOf(".")) {
      h = h.slice(i + 1);
      const d = this.byName.get(h);
      if (d && d.includeSubdomains) return d;
    }
    return null;
  }

  /** The normalized policy in the policy-file schema (Go's Policy.MarshalJSON). */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { version: 1 };
    if (this.reportURI) out.report_uri = this.reportURI;
    if (this.ctLogs.length) {
      out.ct_logs = this.ctLogs.map((l) => (l.description ? { key: l.key, operator: l.operator, description: l.description } : { key: l.key, operator: l.operator }));
    }
    out.domains = this.domains.map(domainJSON);
    return out;
  }

  /** toJSON as text: two policies with the same text say the same thing. */
  canonical(): string {
    return JSON.stringify(this.toJSON());
  }
}

/** A rule in the normalized policy-file form. */
export function domainJSON(d: Domain): Record<string, unknown> {
  const o: Record<string, unknown> = { domain: d.name, include_subdomains: d.includeSubdomains, mode: d.mode };
  if (d.expires) o.expires = d.expires;
  o.pins = d.pins.map((p) => {
    const r = d.roles.get(p.key);
    return r ? { pin: p.toString(), role: r } : p.toString();
  });
  if (d.allowSinglePin) o.allow_single_pin = true;
  if (d.reportURI) o.report_uri = d.reportURI;
  return o;
}

/** A rule as input again, to combine policies. */
export function domainInput(d: Domain): DomainInput {
  return {
    name: d.name,
    includeSubdomains: d.includeSubdomains,
    mode: d.mode,
    expires: d.expires,
    pins: [...d.pins],
    roles: new Map(d.roles),
    allowSinglePin: d.allowSinglePin,
    reportURI: d.reportURI,
  };
}

/** The largest policy text parsePolicy reads (as Go's maxPolicySize). */
export const MAX_POLICY_SIZE = 1 << 20;

/**
 * Parses a policy from JSON text (or an already parsed strict JSON value).
 * Throws PolicyError listing every problem.
 */
export function parsePolicy(input: string | JsonValue, source = ""): Policy {
  let v: JsonValue;
  if (typeof input === "string") {
    if (input.length > MAX_POLICY_SIZE) throw new PolicyError([{ domain: "", message: `larger than ${MAX_POLICY_SIZE} bytes` }], source);
    if (input.trim() === "") throw new PolicyError([{ domain: "", message: "empty file" }], source);
    try {
      v = parseJSON(input);
    } catch (e) {
      throw new PolicyError([{ domain: "", message: `not valid JSON: ${(e as Error).message}` }], source);
    }
  } else {
    v = input;
  }
  const { reportURI, ctLogs, domains, problems } = decodePolicy(v);
  if (problems.length) throw new PolicyError(problems, source);
  return buildPolicy(reportURI, ctLogs, domains, source);
}

/** Validates rules and returns a Policy, as Go's NewPolicyWithCTLogs; throws PolicyError. */
export function newPolicy(reportURI: string, domains: DomainInput[], ctLogs: CTLog[] = []): Policy {
  return buildPolicy(reportURI, ctLogs, domains, "");
}

class Shape extends Error {}

function typeName(v: JsonValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "string") return "a string";
  if (v instanceof JsonNumber) return "a number";
  if (Array.isArray(v)) return "an array";
  return "an object";
}

function want(path: string, what: string, v: JsonValue): never {
  throw new Shape(`field ${path}: want ${what}, got ${typeName(v)}`);
}
function str(path: string, v: JsonValue): string {
  return typeof v === "string" ? v : want(path, "a string", v);
}
function bool(path: string, v: JsonValue): boolean {
  return typeof v === "boolean" ? v : want(path, "true or false", v);
}
function arr(path: string, v: JsonValue): JsonValue[] {
  return Array.isArray(v) ? v : want(path, "an array", v);
}
function obj(path: string, v: JsonValue): JsonObject {
  return v instanceof Map ? v : want(path, "an object", v);
}

function decodePolicy(v: JsonValue): { reportURI: string; ctLogs: CTLog[]; domains: DomainInput[]; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const fail = (message: string) => ({ reportURI: "", ctLogs: [], domains: [], problems: [{ domain: "", message }] });
  let version: bigint | null = 0n;
  let reportURI = "";
  const ctLogs: CTLog[] = [];
  const rawDomains: { fields: JsonObject; index: number }[] = [];
  try {
    const top = obj("(policy)", v);
    for (const [k, x] of top) {
      switch (k) {
        case "version":
          if (!(x instanceof JsonNumber)) want("version", "an integer", x);
          version = x.bigint();
          if (version === null) throw new Shape(`field version: want an integer, got ${x.text}`);
          break;
        case "report_uri":
          reportURI = str("report_uri", x);
          break;
        case "ct_logs":
          arr("ct_logs", x).forEach((e, i) => {
            const path = `ct_logs[${i}]`;
            const f = obj(path, e);
            let key = "", operator = "", description = "";
            for (const [lk, lv] of f) {
              if (lk === "key") key = str(`${path}.key`, lv);
              else if (lk === "operator") operator = str(`${path}.operator`, lv);
              else if (lk === "description") description = str(`${path}.description`, lv);
              else throw new Shape(`field ${lk} is not a ct_logs field (want key, operator, description)`);
            }
            ctLogs.push({ key, operator, description });
          });
          break;
        case "domains":
          arr("domains", x).forEach((e, i) => rawDomains.push({ fields: obj(`domains[${i}]`, e), index: i }));
          break;
        default:
          throw new Shape(`field ${k} is not a policy field`);
      }
    }
    if (version !== 1n) return fail(`version ${version}: want version: 1`);
    const domains: DomainInput[] = [];
    for (const { fields, index } of rawDomains) {
      const { d, errs } = decodeDomain(fields, index);
      const name = d.name || `#${index + 1}`;
      for (const message of errs) problems.push({ domain: name, message });
      domains.push(d);
    }
    return { reportURI, ctLogs, domains, problems };
  } catch (e) {
    if (e instanceof Shape) return fail(e.message);
    throw e;
  }
}

const dateRE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;

/** Parses YYYY-MM-DD as Go's time.Parse("2006-01-02"); returns the UTC ms of 00:00 or null. */
export function parseDate(s: string): number | null {
  const m = dateRE.exec(s);
  if (!m) return null;
  const y = Number(m[1]), mo = Number(m[2]), d = Number(m[3]);
  if (mo < 1 || mo > 12 || d < 1) return null;
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (d > days) return null;
  const t = Date.UTC(y, mo - 1, d);
  // Date.UTC maps years 0-99 to 1900-1999.
  const dt = new Date(t);
  dt.setUTCFullYear(y);
  return dt.getTime();
}

function decodeDomain(f: JsonObject, index: number): { d: DomainInput; errs: string[] } {
  const p = `domains[${index}]`;
  const d: DomainInput = { name: "", pins: [] };
  const errs: string[] = [];
  let rawPins: JsonValue[] = [];
  for (const [k, v] of f) {
    switch (k) {
      case "domain": d.name = str(`${p}.domain`, v); break;
      case "include_subdomains": d.includeSubdomains = bool(`${p}.include_subdomains`, v); break;
      case "mode": d.mode = str(`${p}.mode`, v); break;
      case "expires": d.expires = str(`${p}.expires`, v); break;
      case "pins": rawPins = arr(`${p}.pins`, v); break;
      case "allow_single_pin": d.allowSinglePin = bool(`${p}.allow_single_pin`, v); break;
      case "report_uri": d.reportURI = str(`${p}.report_uri`, v); break;
      case "require_scts": d.requireSCTs = bool(`${p}.require_scts`, v); break;
      default: throw new Shape(`field ${k} is not a domain field`);
    }
  }
  if (d.expires && parseDate(d.expires) === null) {
    errs.push(`expires ${JSON.stringify(d.expires)}: want a date as YYYY-MM-DD`);
    d.expires = "";
  }
  rawPins.forEach((e, i) => {
    const pp = `${p}.pins[${i}]`;
    let text: string;
    let role = "";
    if (typeof e === "string") text = e;
    else if (e instanceof Map) {
      let t: string | undefined;
      for (const [k, v] of e) {
        if (k === "pin") t = str(`${pp}.pin`, v);
        else if (k === "role") role = str(`${pp}.role`, v);
        else throw new Shape(`field ${k} is not a pin field (want pin, role)`);
      }
      if (!t) throw new Shape(`${pp}: pin entry without pin`);
      text = t;
    } else throw new Shape(`${pp}: a pin is a string or {pin: ..., role: ...}`);
    let pin: Pin;
    try {
      pin = Pin.parse(text);
    } catch (err) {
      if (err instanceof PinParseError) { errs.push(err.message); return; }
      throw err;
    }
    d.pins.push(pin);
    if (role) {
      d.roles ??= new Map();
      d.roles.set(pin.key, role);
    }
  });
  return { d, errs };
}

function checkReportURI(s: string): string | null {
  let u;
  try {
    u = parseURL(s);
  } catch (e) {
    if (e instanceof URLError) return /absolute/.test(e.message) ? `${JSON.stringify(s)} is not an absolute URL` : `${JSON.stringify(s)} is not a URL`;
    throw e;
  }
  if (u.hasUserinfo) return `${JSON.stringify(s)} carries credentials; they would end up in logs`;
  if (u.scheme === "https") return null;
  if (u.scheme === "http") {
    if (isLoopbackHost(u.hostname)) return null;
    return `${JSON.stringify(s)} uses http: reports carry certificate chains and host names, so they must go over https (http is allowed only to a loopback address)`;
  }
  return `${JSON.stringify(s)}: scheme must be https`;
}

function checkLabel(l: string): string | null {
  if (l === "") return "empty label in host name";
  if (l.length > 63) return `label ${JSON.stringify(l)} is longer than 63 characters`;
  for (let i = 0; i < l.length; i++) {
    const c = l.charCodeAt(i);
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95) continue;
    if (c === 45 && i !== 0 && i !== l.length - 1) continue;
    if (c >= 0x80) return `label ${JSON.stringify(l)} is not ASCII: write internationalized names in their punycode (xn--) form`;
    return `invalid character '${l[i]}' in host name`;
  }
  return null;
}

function checkName(name: string): { name?: string; err?: string } {
  if (name === "") return { err: "domain is empty" };
  const a = parseIP(name.replace(/^\[+|\]+$/g, ""));
  if (a) {
    if (a.zone) return { err: "an IP address with a zone cannot be pinned" };
    return { name: formatIP(unmap(a)) };
  }
  if (name.includes("*")) return { err: "wildcards are not allowed: pin the parent domain with include_subdomains: true" };
  if (name.includes("://") || /[/:]/.test(name)) return { err: "want a host name, without scheme, port or path" };
  const n = (name.endsWith(".") ? name.slice(0, -1) : name).replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (n.length > 253) return { err: "host name longer than 253 characters" };
  for (const l of n.split(".")) {
    const e = checkLabel(l);
    if (e) return { err: e };
  }
  return { name: n };
}

function checkDomain(d: DomainInput, defaultURI: string): { domain?: Domain; errs: string[] } {
  const cn = checkName(d.name);
  if (cn.err) return { errs: [cn.err] };
  const name = cn.name!;
  const errs: string[] = [];
  const isIP = parseIP(name) !== null;
  if (isIP && d.includeSubdomains) errs.push("include_subdomains makes no sense for an IP address");
  let mode: Mode = "enforce";
  if (d.mode === "" || d.mode === undefined || d.mode === "enforce") mode = "enforce";
  else if (d.mode === "report-only") mode = "report-only";
  else errs.push(`mode ${JSON.stringify(d.mode)}: want "enforce" or "report-only"`);
  let expiresAt: number | null = null;
  const expires = d.expires ?? "";
  if (expires) {
    const t = parseDate(expires);
    if (t === null) errs.push(`expires ${JSON.stringify(expires)}: want a date as YYYY-MM-DD`);
    else expiresAt = t + 86400000;
  }
  if (d.pins.length === 0) errs.push(ERR.noPins);
  const seen = new Map<string, number>();
  for (const p of d.pins) {
    const n = (seen.get(p.key) ?? 0) + 1;
    seen.set(p.key, n);
    if (n === 2) errs.push(`${p}: ${ERR.duplicatePin}`);
  }
  const roles = new Map<string, Role>();
  for (const k of [...(d.roles?.keys() ?? [])].sort()) {
    const r = d.roles!.get(k)!;
    const pin = d.pins.find((p) => p.key === k);
    if (!pin) {
      errs.push(`a role is given for ${k}, which is not one of the rule's pins`);
      continue;
    }
    if (r === "leaf" || r === "backup" || r === "ca") roles.set(k, r);
    else if (r !== "") errs.push(`pin ${pin}: role ${JSON.stringify(r)}: want leaf, backup or ca`);
  }
  if (mode === "enforce" && d.pins.length === 1 && !d.allowSinglePin) errs.push(ERR.noBackup);
  if (d.requireSCTs) errs.push(ERR.requireSCTs);
  let reportURI = d.reportURI ?? "";
  if (reportURI === "") reportURI = defaultURI;
  else {
    const e = checkReportURI(reportURI);
    if (e) {
      errs.push(`report_uri: ${e}`);
      return { errs };
    }
  }
  if (reportURI !== "") {
    const h = canonicalHost(parseURL(reportURI).hostname).host;
    if (h === name || (d.includeSubdomains && h.endsWith("." + name))) errs.push(`${reportURI}: ${ERR.reportLoop}`);
  }
  if (errs.length) return { errs };
  const domain: Domain = Object.freeze({
    name,
    includeSubdomains: !!d.includeSubdomains,
    mode,
    expires,
    expiresAt,
    pins: Object.freeze([...d.pins]),
    roles,
    allowSinglePin: !!d.allowSinglePin,
    reportURI,
  });
  return { domain, errs };
}

function checkCTLogs(logs: CTLog[]): { logs: CTLog[]; err?: string } {
  const out: CTLog[] = [];
  const seen = new Set<string>();
  for (const l of logs) {
    const der = b64.decode(l.key);
    if (!der || der.length === 0) return { logs: out, err: `ct_logs: key of ${JSON.stringify(l.description)} is not base64` };
    const operator = l.operator.trim();
    if (operator === "") return { logs: out, err: `pin: CT log ${JSON.stringify(l.description)}: no operator` };
    if (seen.has(l.key)) return { logs: out, err: `ct_logs: log ${l.description || l.key} is listed twice` };
    seen.add(l.key);
    out.push(Object.freeze({ key: l.key, operator, description: l.description }));
  }
  return { logs: out };
}

function buildPolicy(reportURI: string, ctLogs: CTLog[], inputs: DomainInput[], source: string): Policy {
  const problems: PolicyProblem[] = [];
  let defaultURI = reportURI;
  if (defaultURI) {
    const e = checkReportURI(defaultURI);
    if (e) {
      problems.push({ domain: "", message: `report_uri: ${e}` });
      defaultURI = "";
    }
  }
  if (inputs.length === 0) throw new PolicyError([{ domain: "", message: "no domains: a policy pins at least one domain" }], source);
  const logs = checkCTLogs(ctLogs);
  if (logs.err) problems.push({ domain: "", message: logs.err });
  const names = new Set<string>();
  const domains: Domain[] = [];
  inputs.forEach((d, i) => {
    const r = checkDomain(d, defaultURI);
    if (!r.domain) {
      const name = d.name || `#${i + 1}`;
      for (const message of r.errs) problems.push({ domain: name, message });
      return;
    }
    if (names.has(r.domain.name)) {
      problems.push({ domain: r.domain.name, message: ERR.duplicateDomain });
      return;
    }
    names.add(r.domain.name);
    domains.push(r.domain);
  });
  if (problems.length) throw new PolicyError(problems, source);
  return Policy.create(reportURI, logs.logs, domains);
}

export { JsonError };
