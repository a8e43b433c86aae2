// IP address parsing with the rules of Go's net/netip.ParseAddr, which the
// Go policy code uses: IPv4 in dotted decimal without leading zeros, IPv6
// (with :: and an optional embedded IPv4 tail, an optional %zone), printed
// back in the canonical form of RFC 5952 (netip's String).

export interface IPAddr {
  /** 4 or 16 bytes. */
  bytes: Uint8Array;
  zone: string;
}

export function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (p.length === 0 || p.length > 3 || !/^[0-9]+$/.test(p)) return null;
    if (p.length > 1 && p[0] === "0") return null; // netip refuses leading zeros
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | null {
  const out = new Uint8Array(16);
  let head: string[];
  let tail: string[];
  const dc = s.indexOf("::");
  if (dc >= 0) {
    if (s.indexOf("::", dc + 1) >= 0) return null;
    const a = s.slice(0, dc);
    const b = s.slice(dc + 2);
    head = a === "" ? [] : a.split(":");
    tail = b === "" ? [] : b.split(":");
  } else {
    head = s.split(":");
    tail = [];
  }
  const groups = (list: string[], isLast: boolean): number[] | null => {
    const out: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const g = list[i]!;
      if (isLast && i === list.length - 1 && g.includes(".")) {
        const v4 = parseIPv4(g);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = groups(head, dc < 0);
  const t = groups(tail, true);
  if (!h || !t) return null;
  if (dc < 0) {
    if (h.length !== 8) return null;
  } else if (h.length + t.length > 7) {
    return null;
  }
  const words = new Array<number>(8).fill(0);
  h.forEach((w, i) => (words[i] = w));
  t.forEach((w, i) => (words[8 - t.length + i] = w));
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** Parses an IP address as netip.ParseAddr does; null when it is not one. */
export function parseIP(s: string): IPAddr | null {
  if (s.includes(":")) {
    let zone = "";
    const pct = s.indexOf("%");
    let addr = s;
    if (pct >= 0) {
      zone = s.slice(pct + 1);
      addr = s.slice(0, pct);
      if (zone === "") return null;
    }
    const b = parseIPv6(addr);
    return b ? { bytes: b, zone } : null;
  }
  const b = parseIPv4(s);
  return b ? { bytes: b, zone: "" } : null;
}

/** The address without an IPv4-mapped IPv6 prefix (netip's Unmap). */
export function unmap(a: IPAddr): IPAddr {
  const b = a.bytes;
  if (b.length === 16) {
    let mapped = b[10] === 0xff && b[11] === 0xff;
    for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
    if (mapped) return { bytes: b.slice(12), zone: "" };
  }
  return a;
}

/** netip's String for an address without zone. */
export function formatIP(a: IPAddr): string {
  const b = a.bytes;
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  // RFC 5952: the longest run of two or more zero groups becomes ::, the
  // first one on a tie. (netip prints IPv4-mapped addresses with a dotted
  // tail; callers unmap them first.)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (x: number) => x.toString(16);
  let out: string;
  if (best < 0) out = w.map(hex).join(":");
  else out = w.slice(0, best).map(hex).join(":") + "::" + w.slice(best + bestLen).map(hex).join(":");
  if (b.length === 16) {
    let mapped = b[10] === 0xff && b[11] === 0xff;
    for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
    if (mapped) out = `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  return a.zone ? `${out}%${a.zone}` : out;
}

/** Loopback as Go's httpx.IsLoopbackHost: "localhost", 127.0.0.0/8, ::1
 * (IPv4-mapped addresses unmapped first). */
export function isLoopbackHost(h: string): boolean {
  if (h === "localhost") return true;
  const a = parseIP(h);
  if (!a) return false;
  const u = unmap(a).bytes;
  if (u.length === 4) return u[0] === 127;
  for (let i = 0; i < 15; i++) if (u[i] !== 0) return false;
  return u[15] === 1;
}
