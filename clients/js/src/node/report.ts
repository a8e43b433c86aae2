// Delivery of RFC 7469 reports on Node.js: https.request (not pinned: a
// report about a pin failure must be able to leave), no redirects (Node's
// https.request never follows them), a timeout, off the connection's path.

import http from "node:http";
import https from "node:https";
import { ReportQueue, LIBRARY_VERSION, type ReportQueueOptions, type ReportSender } from "../core/report.js";
import { parseURL } from "../core/url.js";

export interface NodeSenderOptions {
  /** Extra request options (agent, ca, lookup...). The default agent: not pinned. */
  requestOptions?: https.RequestOptions;
  /** Bound on one delivery (ms); default 30 s. */
  timeout?: number;
}

/** A ReportSender that POSTs application/json with https.request (http only to loopback, which the policy allows). */
export function nodeReportSender(o: NodeSenderOptions = {}): ReportSender {
  return (uri, body) =>
    new Promise<void>((resolve, reject) => {
      const u = parseURL(uri);
      const mod = u.scheme === "http" ? http : https;
      const req = mod.request(
        uri,
        {
          ...o.requestOptions,
          method: "POST",
          headers: { "Content-Type": "application/json", "User-Agent": "rampart/" + LIBRARY_VERSION, "Content-Length": Buffer.byteLength(body) },
          timeout: o.timeout ?? 30000,
        },
        (res) => {
          let n = 0;
          res.on("data", (c: Buffer) => {
            n += c.length;
            if (n > 64 << 10) res.destroy();
          });
          res.on("end", () => {
            const code = res.statusCode ?? 0;
            if (code >= 200 && code < 300) resolve();
            else reject(new Error(`collector answered ${code}`));
          });
          res.on("error", reject);
          res.on("aborted", () => reject(new Error("collector aborted the response")));
        },
      );
      req.on("timeout", () => req.destroy(new Error("report delivery timed out")));
      req.on("error", reject);
      req.end(body);
    });
}

/** A ReportQueue that sends with nodeReportSender. */
export function nodeReportQueue(o: Omit<ReportQueueOptions, "send"> & NodeSenderOptions & { send?: ReportSender } = {}): ReportQueue {
  return new ReportQueue({ ...o, send: o.send ?? nodeReportSender(o) });
}
