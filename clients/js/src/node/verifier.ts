// Pinning TLS connections on Node.js: a checkServerIdentity hook (which Node
// calls only after its own certificate validation succeeded) that first runs
// tls.checkServerIdentity, then rebuilds the verified chains (chain.ts) and
// applies the policy; and the bookkeeping that keeps connections, pooled
// sockets and TLS sessions made under old pins from outliving them.

import type { X509Certificate } from "node:crypto";
import https from "node:https";
import tls from "node:tls";
import { checkServerName, type Policy } from "../core/policy.js";
import { DedupWindow } from "../core/report.js";
import { evaluate, failureKey, refuses, type ChainCert, type Failure, type Reporter } from "../core/verify.js";
import { buildChains, fromDetailed, servedList, toChainCert, trustAnchors, type TrustAnchors } from "./chain.js";

/** Where failures are logged, once a day per distinct failure. */
export interface Logger {
  info?(message: string, attrs: Record<string, unknown>): void;
  warn(message: string, attrs: Record<string, unknown>): void;
  error(message: string, attrs: Record<string, unknown>): void;
}

const consoleLogger: Logger = {
  warn: (m, a) => console.warn(m, a),
  error: (m, a) => console.error(m, a),
};

export interface PinVerifierOptions {
  /** The policy in effect. */
  policy: Policy;
  /** Receives every failure, in both modes (a ReportQueue sends RFC 7469 reports). */
  reporter?: Reporter;
  /** Logs each distinct failure once a day; default console, null for none. Never given policy contents. */
  logger?: Logger | null;
  /** The clock of pin-set expiry (ms). Certificates are validated by Node at the real time. */
  now?: () => number;
  /** Options of the agents the verifier hands out (verifier.agent): ca, keepAlive, lookup... */
  agentOptions?: https.AgentOptions;
}

/** What the verifier knows of a connection it checked. */
interface ConnInfo {
  host: string;
  port: number;
  gen: number;
  served: X509Certificate[];
  anchors: TrustAnchors;
  /** Computed when the host was pinned, else on the first re-check. */
  chains?: ChainCert[][];
  servedCerts?: ChainCert[];
}

/** The hook refuses a configuration that could not be pinned. */
export class PinConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PinConfigError";
  }
}

/** A connection closed because a new policy refuses it. */
export class PolicyChangedError extends Error {
  readonly code = "ERR_RAMPART_POLICY_CHANGED";
  constructor(host: string) {
    super(`pin: the connection to ${host} was closed: the policy now in effect refuses its certificate chain`);
    this.name = "PolicyChangedError";
  }
}

type ConnectOptions = tls.ConnectionOptions & { _agentKey?: string };

/**
 * Pins TLS connections to a policy. Make connections with verifier.agent
 * (an https.Agent, fresh after every policy change) or verifier.connect
 * (tls.connect). setPolicy replaces the policy and closes what it refuses.
 */
export class PinVerifier {
  private _policy: Policy;
  private _gen = 1;
  private _agent: PinnedAgent | null = null;
  private readonly live = new Set<tls.TLSSocket>();
  private readonly infos = new WeakMap<tls.TLSSocket, ConnInfo>();
  private readonly sessions = new WeakMap<Buffer, ConnInfo>();
  private readonly notices = new DedupWindow();
  readonly reporter: Reporter | undefined;
  private readonly logger: Logger | null;
  private readonly clock: () => number;
  readonly agentOptions: https.AgentOptions;

  constructor(opts: PinVerifierOptions) {
    if (!opts.policy) throw new PinConfigError("pin: PinVerifier needs a policy");
    this._policy = opts.policy;
    this.reporter = opts.reporter;
    this.logger = opts.logger === undefined ? consoleLogger : opts.logger;
    this.clock = opts.now ?? Date.now;
    this.agentOptions = { keepAlive: true, ...opts.agentOptions };
  }

  get policy(): Policy {
    return this._policy;
  }

  /** Increases with every setPolicy. */
  get generation(): number {
    return this._gen;
  }

  now(): number {
    return this.clock();
  }

  /** The agent to use for requests now: a new one (with an empty TLS session cache) after every policy change. */
  get agent(): PinnedAgent {
    if (!this._agent) this._agent = new PinnedAgent(this, this.agentOptions);
    return this._agent;
  }

  /**
   * Replaces the policy for new connections, and makes sure nothing
   * checked under the old pins outlives them: connections the new policy
   * refuses are destroyed (in-flight requests on them fail), the others
   * keep working; the current agent is retired (its idle sockets closed,
   * its TLS sessions never resumed again) and verifier.agent is a new one.
   */
  setPolicy(p: Policy): void {
    if (!p) throw new PinConfigError("pin: setPolicy with no policy");
    this._policy = p;
    this._gen++;
    const old = this._agent;
    this._agent = null;
    if (old) old.retire();
    const now = this.now();
    for (const s of [...this.live]) {
      const info = this.infos.get(s);
      if (!info || info.gen === this._gen) continue;
      if (this.refusesConn(info, now)) s.destroy(new PolicyChangedError(info.host));
      else info.gen = this._gen;
    }
  }

  private chainsOf(info: ConnInfo): ChainCert[][] {
    if (!info.chains) {
      const leaf = info.served[0];
      info.chains = leaf ? buildChains(leaf, info.served.slice(1), info.anchors).map((c) => c.map(toChainCert)) : [];
    }
    return info.chains;
  }

  private refusesConn(info: ConnInfo, now: number): boolean {
    return refuses(this._policy, info.host, this.chainsOf(info), now);
  }

  /** @internal: re-checks a connection under the current policy; the refusal, if any. */
  recheck(socket: tls.TLSSocket): Error | null {
    const info = this.infos.get(socket);
    if (!info) return socket.destroyed ? null : new PinConfigError("pin: a connection this verifier did not check");
    if (info.gen === this._gen) return null;
    if (this.refusesConn(info, this.now())) return new PolicyChangedError(info.host);
    info.gen = this._gen;
    return null;
  }

  /** Connects with tls.connect, pinned. */
  connect(options: tls.ConnectionOptions, secureConnectListener?: () => void): tls.TLSSocket {
    const { opts, attach } = this.prepare(options, options.session ?? undefined);
    const socket = tls.connect(opts, secureConnectListener);
    attach(socket);
    return socket;
  }

  /**
   * @internal The options of a pinned connection, and attach(), to call
   * with the socket tls.connect returned. session is the session to resume,
   * kept only when this verifier checked the connection that made it.
   */
  prepare(options: ConnectOptions, session: Buffer | undefined): { opts: ConnectOptions; attach: (s: tls.TLSSocket) => void } {
    if (options.rejectUnauthorized === false) {
      throw new PinConfigError("pin: rejectUnauthorized is false; pinning narrows certificate validation and never replaces it (trust a private CA through the ca option)");
    }
    if (options.checkServerIdentity) {
      throw new PinConfigError("pin: the options already have a checkServerIdentity hook, which pinning would replace");
    }
    const port = Number(options.port ?? 443);
    let socket: tls.TLSSocket | undefined;
    const anchors = trustAnchors(options.ca as string | Buffer | (string | Buffer)[] | undefined);
    const resume = session && this.usableSession(session) ? session : undefined;
    const opts: ConnectOptions = {
      ...options,
      session: resume,
      checkServerIdentity: (host: string, cert: tls.PeerCertificate) => {
        const err = tls.checkServerIdentity(host, cert);
        if (err) return err;
        if (!socket) return new PinConfigError("pin: internal error: no socket to check");
        return this.check(socket, host, port, cert as tls.DetailedPeerCertificate, anchors);
      },
    };
    const attach = (s: tls.TLSSocket) => {
      socket = s;
      this.live.add(s);
      s.once("close", () => this.live.delete(s));
      // Node skips checkServerIdentity on a resumed session: the session
      // must be one this verifier checked, and pass the policy now in force.
      s.once("secureConnect", () => {
        if (!s.isSessionReused()) return;
        const info = resume ? this.sessions.get(resume) : undefined;
        if (!info) {
          s.destroy(new PinConfigError("pin: resumed a TLS session this verifier did not check"));
          return;
        }
        const own: ConnInfo = { ...info };
        this.infos.set(s, own);
        const err = this.recheck(s);
        if (err) s.destroy(err);
      });
      s.on("session", (buf: Buffer) => {
        const info = this.infos.get(s);
        if (info && !s.destroyed) this.sessions.set(buf, info);
      });
    };
    return { opts, attach };
  }

  private usableSession(session: Buffer): boolean {
    const info = this.sessions.get(session);
    if (!info) return false;
    if (info.gen === this._gen) return true;
    if (this.refusesConn(info, this.now())) return false;
    info.gen = this._gen;
    return true;
  }

  /** The pin check of one handshake; the error refuses the connection. */
  private check(socket: tls.TLSSocket, host: string, port: number, detailed: tls.DetailedPeerCertificate, anchors: TrustAnchors): Error | undefined {
    try {
      checkServerName(host);
    } catch (e) {
      return e as Error;
    }
    const served = takeServed(socket, detailed);
    const info: ConnInfo = { host, port, gen: this._gen, served, anchors };
    this.infos.set(socket, info);
    const policy = this._policy;
    if (!policy.match(host)) return undefined; // chains are built if a later policy pins the host
    const now = this.now();
    const chains = this.chainsOf(info);
    const servedCerts = served.map(toChainCert);
    const d = evaluate(policy, host, port, servedCerts, chains, now,
      "none could be rebuilt, by signatures, from the certificates the server sent to the trust anchors");
    if (d.failure) this.notify(d.failure);
    return d.error;
  }

  private notify(f: Failure): void {
    try {
      this.reporter?.report(f);
    } catch {
      // A reporter never fails a connection.
    }
    if (!this.logger || !this.notices.first(failureKey(f), f.time)) return;
    const attrs: Record<string, unknown> = { host: f.host, rule: f.domain.name, mode: f.domain.mode, reason: f.reason };
    if (f.served[0]) attrs.served_leaf_pin = "sha256/" + f.served[0].spki;
    if (f.reason === "pin-set-expired") {
      this.logger.warn("pin: pin set expired; host gets CA validation only", { ...attrs, expired_at: new Date(f.domain.expiresAt!).toISOString() });
    } else if (f.domain.mode === "report-only") {
      this.logger.warn("pin: pin validation failed; connection allowed (report-only)", attrs);
    } else {
      this.logger.error("pin: pin validation failed; connection refused", attrs);
    }
  }
}

/**
 * The certificates the server sent, from getPeerX509Certificate() (see
 * chain.ts). That call takes them out of the connection on the client side,
 * so the socket's getPeerX509Certificate and getPeerCertificate then
 * answer from what was read here: callers see what Node would have shown.
 */
function takeServed(socket: tls.TLSSocket, detailed: tls.DetailedPeerCertificate): X509Certificate[] {
  const leaf = socket.getPeerX509Certificate();
  let served = servedList(leaf);
  if (served.length === 0) served = fromDetailed(detailed);
  const abbreviated: Record<string, unknown> = { ...detailed };
  delete abbreviated.issuerCertificate;
  const s = socket as unknown as Record<string, unknown>;
  s.getPeerX509Certificate = () => leaf;
  s.getPeerCertificate = (d?: boolean) => (d ? detailed : abbreviated);
  return served;
}

/**
 * An https.Agent whose TLS connections are pinned by its verifier. Pooled
 * sockets are checked again against the current policy before reuse and
 * when they become free; a retired agent (after a policy change) keeps no
 * socket alive and resumes no TLS session.
 */
export class PinnedAgent extends https.Agent {
  private retired = false;

  constructor(readonly verifier: PinVerifier, options?: https.AgentOptions) {
    super(options);
  }

  /** @internal */
  retire(): void {
    this.retired = true;
    const free = (this as unknown as { freeSockets: Record<string, tls.TLSSocket[]> }).freeSockets;
    for (const list of Object.values(free)) for (const s of [...list]) s.destroy();
  }

  override createConnection(...args: unknown[]): tls.TLSSocket {
    const [options, cb] = normalize(args);
    let session: Buffer | undefined;
    if (!this.retired) {
      session = (options.session as Buffer | undefined) ?? undefined;
      const getSession = (this as unknown as { _getSession?: (k: string) => Buffer | undefined })._getSession;
      if (!session && options._agentKey && typeof getSession === "function") session = getSession.call(this, options._agentKey);
    }
    const { opts, attach } = this.verifier.prepare(options, session);
    const superCreate = https.Agent.prototype.createConnection as unknown as (this: https.Agent, o: ConnectOptions, cb?: unknown) => tls.TLSSocket;
    const socket = superCreate.call(this, opts, cb);
    attach(socket);
    return socket;
  }

  override keepSocketAlive(socket: tls.TLSSocket): boolean {
    if (this.retired || this.verifier.recheck(socket)) return false;
    return (https.Agent.prototype as unknown as { keepSocketAlive(s: unknown): boolean }).keepSocketAlive.call(this, socket);
  }

  override reuseSocket(socket: tls.TLSSocket, req: import("node:http").ClientRequest): void {
    const err = this.verifier.recheck(socket);
    (https.Agent.prototype as unknown as { reuseSocket(s: unknown, r: unknown): void }).reuseSocket.call(this, socket, req);
    // Destroyed once the request listens to the socket, so that the
    // request fails with the refusal (and nothing is written).
    if (err) req.once("socket", () => socket.destroy(err));
  }
}

function normalize(args: unknown[]): [ConnectOptions, unknown] {
  const [port, host, options] = args;
  let o: ConnectOptions;
  if (port !== null && typeof port === "object") o = { ...(port as ConnectOptions) };
  else if (host !== null && typeof host === "object") o = { ...(host as ConnectOptions) };
  else if (options !== null && typeof options === "object") o = { ...(options as ConnectOptions) };
  else o = {};
  if (typeof port === "number") o.port = port;
  if (typeof host === "string") o.host = host;
  const cb = args.find((a) => typeof a === "function");
  return [o, cb];
}

export interface PinnedOptions {
  /** The verifier to use; or give policy (and reporter, logger, now) to make one. */
  verifier?: PinVerifier;
  policy?: Policy;
  reporter?: Reporter;
  logger?: Logger | null;
  now?: () => number;
}

function verifierOf(o: PinnedOptions, agentOptions?: https.AgentOptions): PinVerifier {
  if (o.verifier) return o.verifier;
  if (!o.policy) throw new PinConfigError("pin: give a verifier or a policy");
  return new PinVerifier({ policy: o.policy, reporter: o.reporter, logger: o.logger, now: o.now, agentOptions });
}

/** An https.Agent pinned by options.verifier (or a verifier made from options.policy). */
export function pinnedAgent(options: PinnedOptions & https.AgentOptions): PinnedAgent {
  const { verifier, policy, reporter, logger, now, ...agentOptions } = options;
  const v = verifierOf({ verifier, policy, reporter, logger, now }, agentOptions);
  return new PinnedAgent(v, { keepAlive: true, ...agentOptions });
}

/** tls.connect, pinned by options.verifier (or a verifier made from options.policy). */
export function pinnedConnect(options: PinnedOptions & tls.ConnectionOptions, secureConnectListener?: () => void): tls.TLSSocket {
  const { verifier, policy, reporter, logger, now, ...tlsOptions } = options;
  return verifierOf({ verifier, policy, reporter, logger, now }).connect(tlsOptions, secureConnectListener);
}
