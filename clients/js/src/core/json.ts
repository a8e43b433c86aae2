// A strict JSON reader (RFC 8259). JSON.parse keeps the last of two members
// with the same name; here a duplicate name is an error, so that a verifier
// and a signer can never read one text two ways. Numbers stay text
// (JsonNumber) so that the caller decides whether an integer is wanted.

/** A JSON number as written; see isInteger and toSafeInteger. */
export class JsonNumber {
  constructor(readonly text: string) {}
  /** Whether the number is written as an integer (no fraction, no exponent). */
  isInteger(): boolean {
    return /^-?(0|[1-9][0-9]*)$/.test(this.text);
  }
  /** The value as a BigInt when written as an integer, else null. */
  bigint(): bigint | null {
    return this.isInteger() ? BigInt(this.text) : null;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** A JSON object: members in the order written. */
export type JsonObject = Map<string, JsonValue>;

export class JsonError extends Error {}

/** The largest nesting accepted. */
const maxDepth = 64;

/** Parses text as exactly one JSON value, refusing duplicate member names. */
export function parseJSON(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) throw new JsonError(`data after the JSON value at offset ${p.i}`);
  return v;
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.i++;
    }
  }

  fail(what: string): never {
    throw new JsonError(`${what} at offset ${this.i}`);
  }

  value(depth: number): JsonValue {
    if (depth > maxDepth) this.fail("nesting too deep");
    const c = this.s[this.i];
    switch (c) {
      case "{":
        return this.object(depth);
      case "[":
        return this.array(depth);
      case '"':
        return this.string();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
    }
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    return this.fail("not a JSON value");
  }

  literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail("not a JSON value");
  }

  number(): JsonNumber {
    const s = this.s;
    const start = this.i;
    let i = this.i;
    const digit = (k: number) => { const c = s.charCodeAt(k); return c >= 48 && c <= 57; };
    if (s[i] === "-") i++;
    if (s[i] === "0") i++;
    else if (digit(i)) while (digit(i)) i++;
    else { this.i = i; this.fail("invalid number"); }
    if (s[i] === ".") {
      i++;
      if (!digit(i)) { this.i = i; this.fail("invalid number"); }
      while (digit(i)) i++;
    }
    if (s[i] === "e" || s[i] === "E") {
      i++;
      if (s[i] === "+" || s[i] === "-") i++;
      if (!digit(i)) { this.i = i; this.fail("invalid number"); }
      while (digit(i)) i++;
    }
    this.i = i;
    return new JsonNumber(s.slice(start, i));
  }

  string(): string {
    this.i++; // the opening quote
    let out = "";
    for (;;) {
      if (this.i >= this.s.length) this.fail("unterminated string");
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail("control character in string");
      if (c !== 0x5c) {
        // Lone surrogates cannot come from UTF-8 input; refuse them anyway.
        if (c >= 0xd800 && c <= 0xdbff) {
          const d = this.s.charCodeAt(this.i + 1);
          if (!(d >= 0xdc00 && d <= 0xdfff)) this.fail("lone surrogate");
          out += this.s[this.i]! + this.s[this.i + 1]!;
          this.i += 2;
          continue;
        }
        if (c >= 0xdc00 && c <= 0xdfff) this.fail("lone surrogate");
        out += this.s[this.i];
        this.i++;
        continue;
      }
      const e = this.s[this.i + 1];
      this.i += 2;
      switch (e) {
        case '"': out += '"'; break;
        case "\\": out += "\\"; break;
        case "/": out += "/"; break;
        case "b": out += "\b"; break;
        case "f": out += "\f"; break;
        case "n": out += "\n"; break;
        case "r": out += "\r"; break;
        case "t": out += "\t"; break;
        case "u": {
          const hi = this.hex4();
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (this.s[this.i] !== "\\" || this.s[this.i + 1] !== "u") this.fail("lone surrogate escape");
            this.i += 2;
            const lo = this.hex4();
            if (!(lo >= 0xdc00 && lo <= 0xdfff)) this.fail("lone surrogate escape");
            out += String.fromCharCode(hi, lo);
          } else if (hi >= 0xdc00 && hi <= 0xdfff) {
            this.fail("lone surrogate escape");
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          this.i -= 2;
          this.fail("invalid escape");
      }
    }
  }

  hex4(): number {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("invalid \\u escape");
    this.i += 4;
    return parseInt(h, 16);
  }

  array(depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") { this.i--; this.fail("expected , or ]"); }
    }
  }

  object(depth: number): JsonObject {
    this.i++;
    const out: JsonObject = new Map();
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a member name");
      const at = this.i;
      const k = this.string();
      if (out.has(k)) { this.i = at; this.fail(`member ${JSON.stringify(k.slice(0, 64))} appears twice`); }
      this.ws();
      if (this.s[this.i++] !== ":") { this.i--; this.fail("expected :"); }
      this.ws();
      out.set(k, this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") { this.i--; this.fail("expected , or }"); }
    }
  }
}

/** Writes a value back as compact JSON (members in order). */
export function stringify(v: JsonValue): string {
  if (v === null || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof JsonNumber) return v.text;
  if (Array.isArray(v)) return "[" + v.map(stringify).join(",") + "]";
  return "{" + [...v].map(([k, x]) => JSON.stringify(k) + ":" + stringify(x)).join(",") + "}";
}
