// Shared by the tests: where the vectors are, a resolver that sends every
// host to 127.0.0.1, and a small GET over an agent.
import { readFileSync } from "node:fs";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { join } from "node:path";

export const vectorsDir = process.env.RAMPART_VECTORS ?? join(import.meta.dirname, "..", "..", "..", "testdata", "vectors");

export function readVectors(name: string): any {
  return JSON.parse(readFileSync(join(vectorsDir, name), "utf8"));
}

/** Every host name resolves to 127.0.0.1 (the harness and the vectors' servers are on loopback). */
export const loopback: LookupFunction = (_host, options, cb) => {
  const o = (typeof options === "object" ? options : {}) as { all?: boolean };
  if (o.all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: "127.0.0.1", family: 4 }]);
  else cb(null, "127.0.0.1", 4);
};

export interface Got {
  status: number;
  body: string;
  reused: boolean;
}

/** GET url with agent; rejects with the request's error. */
export function get(url: string, agent: https.Agent, extra: https.RequestOptions = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, ...extra }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}
